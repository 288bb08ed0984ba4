import { createHash } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import t from 'tap'
import { ProtocolError } from '../src/errors.js'
import type { PreheatStatus } from '../src/swarm/preheat.js'
import { decodePreheatRequest, decodePreheatResponse, encodePreheatResponse } from '../src/swarm/preheat-protocol.js'
import { rendezvousRank } from '../src/swarm/rank.js'
import * as dagCbor from '@ipld/dag-cbor'
import { runCli } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { countingOrigin, originWith, type TestDaemon } from './helpers/daemons.js'
import { holds, startMesh } from './helpers/swarm.js'

/** The sha256 of the image as it is stored on the node: every chunk and the whole digest checked on read. */
async function storedSha (d: TestDaemon, ref: string): Promise<string> {
  const hash = createHash('sha256')
  const { readImage } = await import('../src/store/read-image.js')
  const record = await d.daemon.local.store.resolve(ref)
  for await (const window of readImage(d.daemon.local.store, await d.daemon.local.store.getManifest(record))) for (const c of window) hash.update(c.bytes)
  return `sha256:${hash.digest('hex')}`
}

t.test('preheat --nodes all: every node of a 3-node cluster ends with the image, the origin read about once', async t => {
  const size = 24 * 1024 * 1024
  const bytes = seededBytes(size, 'preheat-all')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin, counts } = countingOrigin(inner)
  const nodes = await startMesh(t, 3, { origin })
  const res = await runCli(['preheat', ref, '--nodes', 'all', '--api', nodes[0].daemon.info().api], { timeoutMs: 180_000 })
  t.equal(res.code, 0, res.stderr)
  for (const d of nodes) t.match(res.stdout, new RegExp(`${d.daemon.peer.peerId.toString()}.*done\\s+1/1`), 'a line per node, done')
  for (const [i, d] of nodes.entries()) t.equal(await storedSha(d, ref), ref, `node ${i} holds the image with the right sha256`)
  t.ok(counts.bytes >= size * 0.5 && counts.bytes <= size * 1.25, `the origin sent ${counts.bytes} bytes for a ${size}-byte image on 3 nodes`)
})

t.test('preheat --nodes 1 picks one node by rendezvous hash, the same one every time; --nodes 2 adds the next', async t => {
  const bytes = seededBytes(4 * 1024 * 1024, 'preheat-one')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin } = countingOrigin(inner)
  const nodes = await startMesh(t, 3, { origin })
  const ids = nodes.map(d => d.daemon.peer.peerId.toString())
  const ranked = rendezvousRank(ref.slice(7), ids)
  const first = await nodes[1].client.call<PreheatStatus>('POST', '/v1/preheat?wait=true', { refs: [ref], nodes: 1 })
  t.equal(first.ok, true, JSON.stringify(first))
  t.same(first.nodes.map(n => n.peerId), [ranked[0]], 'the top-ranked node was chosen')
  for (const [i, d] of nodes.entries()) t.equal(await holds(d, ref), ids[i] === ranked[0], `node ${i} ${ids[i] === ranked[0] ? 'holds' : 'does not hold'} the image`)
  // Asked through another node, the choice is the same.
  const again = await nodes[2].client.call<PreheatStatus>('POST', '/v1/preheat?wait=true', { refs: [ref], nodes: 1 })
  t.same(again.nodes.map(n => n.peerId), [ranked[0]], 'a repeated preheat picks the same node')
  const two = await nodes[0].client.call<PreheatStatus>('POST', '/v1/preheat?wait=true', { refs: [ref], nodes: 2 })
  t.same(two.nodes.map(n => n.peerId).sort(), ranked.slice(0, 2).sort(), 'two nodes: the first two in rank')
  t.equal(two.ok, true)
  t.equal((await Promise.all(nodes.map(async d => await holds(d, ref)))).filter(Boolean).length, 2, 'exactly two nodes hold it')
  const tooMany = await nodes[0].client.call<PreheatStatus>('POST', '/v1/preheat?wait=true', { refs: [ref], nodes: 5 })
  t.equal(tooMany.ok, false, 'asking for more nodes than are live is not ok')
  t.match(tooMany.problems[0], /only 3 are live/)
})

t.test('preheat of named nodes: an unknown peer reports why; the others still preheat; exit 1', async t => {
  const bytes = seededBytes(2 * 1024 * 1024, 'preheat-named')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin } = countingOrigin(inner)
  const nodes = await startMesh(t, 3, { origin })
  const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const named = nodes[2].daemon.peer.peerId.toString()
  const res = await runCli(['preheat', ref, '--nodes', `${named},${stranger}`, '--json', '--api', nodes[0].daemon.info().api], { timeoutMs: 120_000 })
  t.equal(res.code, 1, 'not every node holds the image')
  const status = JSON.parse(res.stdout) as PreheatStatus
  const byId = new Map(status.nodes.map(n => [n.peerId, n]))
  t.equal(byId.get(named)?.state, 'done', 'the named cluster node preheated')
  t.equal(byId.get(stranger)?.state, 'failed')
  t.match(byId.get(stranger)?.reason, /cannot reach/, 'the unknown node says why')
  t.match(res.stderr, new RegExp(`${stranger}: cannot reach`))
  t.ok(await holds(nodes[2], ref))
  t.notOk(await holds(nodes[0], ref), 'a node not named did not fetch')
  t.notOk(await holds(nodes[1], ref))
  const bad = await runCli(['preheat', ref, '--nodes', 'not-a-peer', '--api', nodes[0].daemon.info().api])
  t.equal(bad.code, 2, 'text that is no peer ID is a usage error')
  t.match(bad.stderr, /neither "all", a count, nor a peer ID/)
})

t.test('a node that cannot get the image reports the fetch error', async t => {
  const { origin } = await originWith(t, [])
  const nodes = await startMesh(t, 2, { origin })
  const missing = `sha256:${'ab'.repeat(32)}`
  const status = await nodes[0].client.call<PreheatStatus>('POST', '/v1/preheat?wait=true', { refs: [missing] })
  t.equal(status.ok, false)
  t.equal(status.nodes.length, 2)
  for (const n of status.nodes) {
    t.equal(n.state, 'failed')
    t.match(n.reason, /does not have it/, `${n.self ? 'this node' : 'the peer'} names the cause`)
  }
})

t.test('the preheat protocol refuses what a peer must not ask or answer', async t => {
  const enc = (o: unknown): Uint8Array => dagCbor.encode(o)
  t.throws(() => decodePreheatRequest(enc({ refs: [] })), ProtocolError, 'no refs')
  t.throws(() => decodePreheatRequest(enc({ refs: new Array(65).fill(`sha256:${'0'.repeat(64)}`) })), ProtocolError, '65 refs')
  t.throws(() => decodePreheatRequest(enc({ refs: ['abcdef0123456789'] })), /prefix/, 'a prefix')
  t.throws(() => decodePreheatRequest(enc({ refs: ['x'.repeat(200)] })), ProtocolError, 'an overlong ref')
  t.throws(() => decodePreheatRequest(enc({ refs: [42] })), ProtocolError, 'not a string')
  t.same(decodePreheatRequest(enc({ refs: [`sha256:${'0'.repeat(64)}`] })), [`sha256:${'0'.repeat(64)}`])
  const ok = { ref: 'r', state: 'fetching', bytes: { local: 0, peer: 1, origin: 2 } }
  t.throws(() => decodePreheatResponse(enc({ images: [ok, ok], done: false }), 1), ProtocolError, 'more entries than refs')
  t.throws(() => decodePreheatResponse(enc({ images: [{ ...ok, state: 'hacked' }], done: false }), 1), ProtocolError, 'an unknown state')
  t.throws(() => decodePreheatResponse(enc({ images: [{ ...ok, bytes: { local: -1, peer: 0, origin: 0 } }], done: false }), 1), ProtocolError, 'negative bytes')
  const err = decodePreheatResponse(encodePreheatResponse({ type: 'error', reason: 'busy', message: 'x'.repeat(5000) }), 1)
  t.equal(err.type, 'error')
  t.ok(err.type === 'error' && err.message.length <= 512, 'a long error text is cut')
})

t.test('a node serves a bounded number of preheats at once; more are answered busy; a place frees when its fetches end, not at a hang-up', async t => {
  const { spawnPeers } = await import('./helpers/peers.js')
  const { FetchJob } = await import('../src/fetch/fetch-job.js')
  const { askPreheat, servePreheat } = await import('../src/swarm/preheat-peer.js')
  const [server, p1, p2] = await spawnPeers(t, 3, { connect: true })
  // A fetcher whose fetches run until the test ends them.
  const jobs: InstanceType<typeof FetchJob>[] = []
  const fetcher = { start: (ref: string) => { const j = new FetchJob(ref); jobs.push(j); return j } } as any
  await servePreheat(server, fetcher, { maxServed: 2 })
  const ref = `sha256:${'cd'.repeat(32)}`
  const asks: Array<{ controller: AbortController, result: Promise<unknown> }> = []
  for (const p of [p1, p2]) {
    const controller = new AbortController()
    let seen!: () => void
    const first = new Promise<void>(resolve => { seen = resolve })
    const result = askPreheat(p, server.peerId, [ref], () => { seen() }, { signal: controller.signal })
    result.catch(() => {})
    asks.push({ controller, result })
    await first
  }
  await t.rejects(askPreheat(p1, server.peerId, [ref], () => {}), { name: 'RemoteError', reason: 'busy' }, 'a third request is refused while two run')
  asks[0].controller.abort()
  await t.rejects(asks[0].result)
  await new Promise(resolve => setTimeout(resolve, 700)) // more than a progress period: the server saw the hang-up
  await t.rejects(askPreheat(p1, server.peerId, [ref], () => {}), { name: 'RemoteError', reason: 'busy' }, 'hanging up does not free the place while its fetch runs')
  jobs[0].succeed()
  await jobs[0].promise
  // The fetch of the request that hung up ended: its place is free again.
  const third = askPreheat(p1, server.peerId, [ref], () => {})
  for (let i = 0; i < 50 && jobs.length < 3; i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(jobs.length >= 3, true, 'the new request started its fetch')
  for (const j of jobs) j.succeed()
  const last = await third
  t.match(last, [{ ref, state: 'available' }], 'the last frame reports the fetch done')
  t.match(await asks[1].result, [{ ref, state: 'available' }])
})
