import t from 'tap'
import { realClock } from '../src/fetch/clock.js'
import { Demand } from '../src/fetch/demand.js'
import { fetchFromPeers } from '../src/fetch/peer-scheduler.js'
import { rendezvousOwner } from '../src/fetch/rendezvous.js'
import { hasBit, type PeerSource } from '../src/fetch/sources.js'
import { keyOf, type Want } from '../src/fetch/wants.js'
import { buildImage, memoryOrigin, seededImageBytes, wantsOf, type BuiltImage } from '../src/testing/memory-image.js'
import { MemoryNetwork, holdsAll } from '../src/testing/memory-peers.js'
import { memoryFetch } from '../src/testing/swarm-node.js'
import { VirtualClock } from '../src/testing/virtual-clock.js'

const image = buildImage(seededImageBytes(2 * 1024 * 1024, 3))
const bigger = buildImage(seededImageBytes(4 * 1024 * 1024, 4))

/** A source that records, in order, the digests asked of it. */
function recorded (s: PeerSource, log: string[]): PeerSource {
  return { id: s.id, manifest: s.manifest.bind(s), have: s.have.bind(s), chunks: (d, o) => { log.push(...d.map(keyOf)); return s.chunks(d, o) } }
}

function bitsFor (img: BuiltImage, pick: (i: number) => boolean): Uint8Array {
  const bits = new Uint8Array(Math.ceil(img.digests.length / 8))
  img.digests.forEach((_, i) => { if (pick(i)) bits[i >> 3] |= 0x80 >> (i & 7) })
  return bits
}

const noEvents = { deliver: async () => {}, received: () => {}, badChunk: () => {} }

t.test('rarest first: chunks one holder has are asked for before those two hold', async t => {
  const clock = new VirtualClock()
  const net = new MemoryNetwork({ clock, latencyMs: 5 })
  net.add('me')
  const half = Math.floor(image.digests.length / 2)
  net.add('all').hold(image, image.bytesOf)
  const front = net.add('front')
  front.know(image)
  front.put(image.digests.slice(0, half).map(digest => ({ digest, bytes: image.bytesOf(digest) })))
  const asked: string[] = []
  const left = await clock.run(fetchFromPeers(wantsOf(image), [
    { source: recorded(net.source('me', 'all'), asked), have: bitsFor(image, () => true) },
    { source: net.source('me', 'front'), have: bitsFor(image, i => i < half) }
  ], noEvents, { clock, limits: { windowPerPeer: 1, batchChunks: 1 } }))
  t.same(left, [])
  const rare = new Set(image.digests.slice(half).map(keyOf))
  const firstRare = asked.slice(0, rare.size)
  t.ok(firstRare.every(k => rare.has(k)), `the only holder of the back half is asked for all ${rare.size} of its chunks first`)
})

t.test('a liar is dropped at its first bad chunk and the honest holder supplies everything', async t => {
  const clock = new VirtualClock()
  const net = new MemoryNetwork({ clock, latencyMs: 5 })
  net.add('me')
  const liar = net.add('liar')
  liar.hold(image, image.bytesOf)
  liar.faults.corrupt = 'all'
  net.add('honest').hold(image, image.bytesOf)
  const bad: string[] = []
  const got = new Set<string>()
  const all = bitsFor(image, () => true)
  const left = await clock.run(fetchFromPeers(wantsOf(image), [
    { source: net.source('me', 'liar'), have: Uint8Array.from(all) },
    { source: net.source('me', 'honest'), have: Uint8Array.from(all) }
  ], { ...noEvents, badChunk: p => { bad.push(p) }, deliver: async (_c, ws) => { for (const w of ws) got.add(w.key) } }, { clock, limits: { windowPerPeer: 1 } }))
  t.same(left, [])
  t.equal(got.size, image.wants.length, 'every chunk delivered, verified')
  t.same(new Set(bad), new Set(['liar']), 'the liar counted')
  t.equal(liar.calls.chunks, 1, 'and asked nothing after its first (bad) batch')
})

t.test('a stalled peer\'s batch goes to another holder after stallMs of virtual time', async t => {
  const clock = new VirtualClock()
  const net = new MemoryNetwork({ clock, latencyMs: 5 })
  net.add('me')
  const stuck = net.add('stuck')
  stuck.hold(image, image.bytesOf)
  stuck.faults.stallAfter = 1
  net.add('good').hold(image, image.bytesOf)
  const out: string[] = []
  const got = new Set<string>()
  const all = bitsFor(image, () => true)
  const started = realClock.now()
  const left = await clock.run(fetchFromPeers(wantsOf(image), [
    { source: net.source('me', 'stuck'), have: Uint8Array.from(all) },
    { source: net.source('me', 'good'), have: Uint8Array.from(all) }
  ], { ...noEvents, peerOut: p => { out.push(p) }, deliver: async (_c, ws) => { for (const w of ws) got.add(w.key) } }, { clock, limits: { stallMs: 10_000 } }))
  t.same(left, [])
  t.equal(got.size, image.wants.length, 'every chunk arrived')
  t.same(out, ['stuck'], 'the stalled peer is out')
  t.ok(clock.now() >= 10_000 && clock.now() < 11_000, `after the stall time (${clock.now()} ms virtual)`)
  t.ok(realClock.now() - started < 5000, 'in far less real time')
})

t.test('rendezvous: four nodes fetching together read each origin group once, each by its owner', async t => {
  const clock = new VirtualClock()
  const net = new MemoryNetwork({ clock, latencyMs: 5 })
  const ids = ['n0', 'n1', 'n2', 'n3']
  const meter = { bytes: 0, reads: 0 }
  const groupBytes = 1024 * 1024
  const readBy = new Map<number, string[]>()
  const runs = ids.map(id => {
    net.add(id)
    const base = memoryOrigin([bigger], {}, meter)
    const origin = {
      ...base,
      read: (hex: string, o: { offset?: number, length?: number, signal?: AbortSignal } = {}) => {
        const g = Math.floor((o.offset ?? 0) / groupBytes)
        readBy.set(g, [...(readBy.get(g) ?? []), id])
        return base.read(hex, o)
      }
    }
    return memoryFetch({ net, id, image: bigger, origin, clock, limits: { groupBytes } })
  })
  const results = await clock.run(Promise.all(runs))
  for (const id of ids) t.ok(holdsAll(net.node(id).bitsOf(bigger), bigger.digests.length), `${id} holds the image`)
  t.equal(meter.bytes, bigger.bytes.length, 'the origin sent one copy')
  for (const [g, readers] of readBy) {
    t.same([...new Set(readers)], [rendezvousOwner(`${bigger.hex}:${g}`, ids)], `group ${g} read by its owner only`)
  }
  t.ok(results.every(r => r.badChunks.length === 0))
})

t.test('a node that joins late takes the whole image from the others, nothing from the origin', async t => {
  const clock = new VirtualClock()
  const net = new MemoryNetwork({ clock, latencyMs: 5 })
  const meter = { bytes: 0, reads: 0 }
  net.add('early')
  net.add('late')
  const origin = memoryOrigin([image], {}, meter)
  const first = await clock.run(memoryFetch({ net, id: 'early', image, origin, clock }))
  t.equal(meter.bytes, image.bytes.length)
  const second = await clock.run(memoryFetch({ net, id: 'late', image, origin, clock }))
  t.equal(meter.bytes, image.bytes.length, 'no more origin bytes')
  t.equal(second.fromPeers, image.bytes.length)
  t.ok(second.doneAt > first.doneAt)
  const w: Want = image.wants[0]
  t.ok(hasBit(net.node('late').bitsOf(image), w.indices[0]))
})

t.test('a group another node is reading is left to it, though a candidate that joins later now owns it', async t => {
  const clock = new VirtualClock()
  const net = new MemoryNetwork({ clock, latencyMs: 5 })
  const meter = { bytes: 0, reads: 0 }
  const groupBytes = 1024 * 1024
  // Names such that the late node wins group 0, which the early one (alone at first) is reading.
  const late = Array.from({ length: 50 }, (_, i) => `late-${i}`).find(id => rendezvousOwner(`${image.hex}:0`, ['early', id]) === id)!
  net.add('early')
  net.add(late)
  const readBy = new Map<number, Set<string>>()
  const originFor = (id: string): ReturnType<typeof memoryOrigin> => {
    // A slow origin: 64 KiB every 250 ms, so a 1 MiB group takes 4 s.
    const base = memoryOrigin([image], { pieceBytes: 64 * 1024, link: async () => { await clock.sleep(250) } }, meter)
    return {
      ...base,
      read: (hex: string, o: { offset?: number, length?: number, signal?: AbortSignal } = {}) => {
        const g = Math.floor((o.offset ?? 0) / groupBytes)
        readBy.set(g, new Set([...(readBy.get(g) ?? []), id]))
        return base.read(hex, o)
      }
    }
  }
  const early = memoryFetch({ net, id: 'early', image, origin: originFor('early'), clock, limits: { groupBytes } })
  const joined = (async () => {
    await clock.sleep(1000)
    return await memoryFetch({ net, id: late, image, origin: originFor(late), clock, limits: { groupBytes } })
  })()
  await clock.run(Promise.all([early, joined]))
  t.ok(holdsAll(net.node(late).bitsOf(image), image.digests.length), 'the late node holds the image')
  t.same([...(readBy.get(0) ?? [])], ['early'], 'group 0 read by the early node only')
  t.ok(meter.bytes <= image.bytes.length * 1.01, `the origin sent ${(meter.bytes / image.bytes.length).toFixed(2)} copies`)
})

t.test('background batches wait while urgent chunks are fetched, then finish the image', async t => {
  const clock = new VirtualClock()
  const net = new MemoryNetwork({ clock, latencyMs: 5 })
  net.add('me')
  net.add('all').hold(image, image.bytesOf)
  const asked: string[] = []
  const demand = new Demand()
  let releaseUrgent!: () => void
  const urgent = demand.urgently(async () => { await new Promise<void>(resolve => { releaseUrgent = resolve }) })
  const got = new Set<string>()
  const background = fetchFromPeers(wantsOf(image), [{ source: recorded(net.source('me', 'all'), asked), have: bitsFor(image, () => true) }], {
    ...noEvents, deliver: async chunks => { for (const c of chunks) got.add(keyOf(c.digest)) }
  }, { clock, yieldTo: demand })
  await clock.advance(3000)
  t.equal(asked.length, 0, 'no background request while an urgent fetch runs')
  releaseUrgent()
  await urgent
  t.same(await clock.run(background), [])
  t.equal(got.size, new Set(image.digests.map(keyOf)).size, 'every chunk arrived once the urgent fetch was done')
})
