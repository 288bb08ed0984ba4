import { VerifiedArrays } from '../chunks/cid.js'
import { realClock } from '../fetch/clock.js'
import type { SwarmLimits } from '../fetch/swarm-fetch.js'
import { FairShareLinks } from './fair-share.js'
import { buildImage, memoryOrigin, seededImageBytes } from './memory-image.js'
import { MemoryNetwork } from './memory-peers.js'
import { memoryFetch } from './swarm-node.js'
import { VirtualClock } from './virtual-clock.js'

export interface SwarmSimOptions {
  nodes: number
  imageBytes: number
  seed: number
  originBitsPerSecond: number
  uploadBitsPerSecond: number
  downloadBitsPerSecond: number
  latencySeconds: number
  /** Connections each node opens to random others (so about twice this many neighbours each). */
  dials: number
  /** Nodes start at uniform random times in [0, joinSpreadSeconds]. */
  joinSpreadSeconds: number
  /** This many nodes (never the first) die at uniform random times in [0, dieWithinSeconds]. */
  die: number
  dieWithinSeconds: number
  limits?: Partial<SwarmLimits>
  /** Told of progress now and then (to standard error, say). */
  progress?: (line: string) => void
}

export const DEFAULT_SIM: Readonly<SwarmSimOptions> = Object.freeze({
  nodes: 1,
  imageBytes: 32 * 1024 * 1024,
  seed: 1,
  originBitsPerSecond: 100e6,
  uploadBitsPerSecond: 100e6,
  downloadBitsPerSecond: 100e6,
  latencySeconds: 0.010,
  dials: 10,
  joinSpreadSeconds: 0,
  die: 0,
  dieWithinSeconds: 5
})

export interface SwarmSimResult {
  nodes: number
  imageBytes: number
  chunks: number
  originBitsPerSecond: number
  uploadBitsPerSecond: number
  downloadBitsPerSecond: number
  latencySeconds: number
  seed: number
  dials: number
  joinSpreadSeconds: number
  died: number
  /** Nodes (not killed) that ended holding every chunk, each byte-identical to the image's. */
  nodesComplete: number
  /** Virtual time from t = 0 until the last surviving node held the image. */
  lastNodeSeconds: number
  /** Median over surviving nodes of the time from t = 0 until each held the image. */
  p50Seconds: number
  /** The fluid model's T* = max(S/u_origin, S/d_min, N·S/(u_origin + Σ u_i)). */
  lowerBoundSeconds: number
  ratio: number
  /** Bytes the origin sent, in copies of the image. */
  originCopies: number
  /** Bytes nodes received from peers, in copies of the image. */
  peerCopies: number
  badChunks: number
  events: number
  wallSeconds: number
  peakRssMiB: number
}

/** Origin reads arrive in pieces of this size, as a socket's reads do. */
const ORIGIN_PIECE_BYTES = 64 * 1024

/** A small seeded generator (mulberry32): the same swarm for the same seed. */
function random (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * A swarm of `nodes` nodes fetching one image at once, in virtual time, each running the real
 * swarmFetch (scheduler, have-feeds, rendezvous ownership of origin groups) over in-memory peers
 * and links shared fairly (see fair-share.ts). Each node finds as holders only its neighbours (a
 * partial mesh of random connections) that have started, as a node finds its connected peers.
 */
export async function simulateSwarm (options: Partial<SwarmSimOptions> = {}): Promise<SwarmSimResult> {
  const o: SwarmSimOptions = { ...DEFAULT_SIM, ...options }
  const wallStart = realClock.now()
  const rand = random(o.seed)
  const clock = new VirtualClock()
  const perMs = (bits: number): number => bits / 8 / 1000
  const nodeCap = { up: perMs(o.uploadBitsPerSecond), down: perMs(o.downloadBitsPerSecond) }
  const originCap = { up: perMs(o.originBitsPerSecond), down: perMs(o.originBitsPerSecond) }
  const links = new FairShareLinks(clock, id => id === 'origin' ? originCap : nodeCap)
  const latencyMs = o.latencySeconds * 1000
  const net = new MemoryNetwork({ clock, latencyMs, link: links.transfer })
  const image = buildImage(seededImageBytes(o.imageBytes, o.seed))
  const meter = { bytes: 0, reads: 0 }
  // Every node checks every chunk it receives, but an array it is handed again is not hashed again.
  const verified = new VerifiedArrays()

  const ids = Array.from({ length: o.nodes }, (_, i) => `node-${String(i).padStart(5, '0')}`)
  const neighbours = new Map(ids.map(id => [id, new Set<string>()]))
  if (o.nodes <= o.dials * 2 + 1) {
    for (const a of ids) for (const b of ids) if (a !== b) neighbours.get(a)!.add(b)
  } else {
    for (const a of ids) {
      while (neighbours.get(a)!.size < o.dials) {
        const b = ids[Math.floor(rand() * ids.length)]
        if (b === a) continue
        neighbours.get(a)!.add(b)
        neighbours.get(b)!.add(a)
      }
    }
  }
  const joinAt = ids.map((_, i) => i === 0 ? 0 : rand() * o.joinSpreadSeconds * 1000)
  const dying = new Map<string, number>()
  while (dying.size < Math.min(o.die, o.nodes - 1)) dying.set(ids[1 + Math.floor(rand() * (o.nodes - 1))], rand() * o.dieWithinSeconds * 1000)

  const done = new Map<string, number>()
  let peerBytes = 0
  let badChunks = 0
  let ended = 0
  let finish!: () => void
  const all = new Promise<void>(resolve => { finish = resolve })
  const settle = (): void => { if (++ended === o.nodes) finish() }
  let peakRss = 0

  ids.forEach((id, i) => {
    net.add(id)
    const controller = new AbortController()
    const start = (): void => {
      const origin = memoryOrigin([image], { link: links.transfer, reader: id, firstByte: async () => { await clock.sleep(2 * latencyMs) }, pieceBytes: ORIGIN_PIECE_BYTES }, meter)
      memoryFetch({ net, id, image, origin, clock, signal: controller.signal, holders: net.holders(id, () => neighbours.get(id)!), limits: o.limits, verifyPeerChunk: verified.verify })
        .then(r => {
          done.set(id, r.doneAt)
          peerBytes += r.fromPeers
          badChunks += r.badChunks.length
        }, () => {})
        .finally(settle)
    }
    clock.setTimer(start, joinAt[i])
    const dieAt = dying.get(id)
    if (dieAt != null) {
      clock.setTimer(() => {
        net.withdraw(image.hex, id)
        net.node(id).kill()
        controller.abort(new Error('killed'))
      }, dieAt)
    }
  })
  // A real-time timer that only reads: it schedules nothing in the simulated world.
  const reporter = o.progress == null
    ? undefined
    : setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss)
      o.progress?.(`${done.size}/${o.nodes} nodes done at ${(clock.now() / 1000).toFixed(2)} s virtual, ${clock.fired} events, origin ${(meter.bytes / o.imageBytes).toFixed(2)} copies, ${links.active} transfers, ${((realClock.now() - wallStart) / 1000).toFixed(0)} s wall`)
    }, 10_000)
  try {
    await clock.run(all)
  } finally {
    clearInterval(reporter)
  }
  peakRss = Math.max(peakRss, process.memoryUsage().rss)

  // Every surviving node holds every chunk, each the image's own bytes.
  let complete = 0
  for (const id of ids) {
    if (dying.has(id) || !done.has(id)) continue
    const chunks = net.node(id).chunks
    const right = image.digests.every(d => {
      const got = chunks.get(Buffer.from(d).toString('latin1'))
      const want = image.bytesOf(d)
      return got === want || (got != null && Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want))
    })
    if (right) complete++
  }
  const times = [...done.entries()].filter(([id]) => !dying.has(id)).map(([, t]) => t / 1000).sort((a, b) => a - b)
  const S = o.imageBytes
  const survivors = o.nodes - dying.size
  const u = o.uploadBitsPerSecond / 8
  const uo = o.originBitsPerSecond / 8
  const lowerBound = Math.max(S / uo, S / (o.downloadBitsPerSecond / 8), survivors * S / (uo + survivors * u))
  const last = times.at(-1) ?? NaN
  return {
    nodes: o.nodes,
    imageBytes: S,
    chunks: image.digests.length,
    originBitsPerSecond: o.originBitsPerSecond,
    uploadBitsPerSecond: o.uploadBitsPerSecond,
    downloadBitsPerSecond: o.downloadBitsPerSecond,
    latencySeconds: o.latencySeconds,
    seed: o.seed,
    dials: o.dials,
    joinSpreadSeconds: o.joinSpreadSeconds,
    died: dying.size,
    nodesComplete: complete,
    lastNodeSeconds: round(last),
    p50Seconds: round(times.length === 0 ? NaN : times[Math.floor((times.length - 1) / 2)]),
    lowerBoundSeconds: round(lowerBound),
    ratio: round(last / lowerBound),
    originCopies: round(meter.bytes / S),
    peerCopies: round(peerBytes / S),
    badChunks,
    events: clock.fired,
    wallSeconds: round((realClock.now() - wallStart) / 1000),
    peakRssMiB: Math.round(peakRss / 1024 / 1024)
  }
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}
