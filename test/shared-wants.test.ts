import t from 'tap'
import { chunkEntries, encodeManifest } from '../src/chunks/manifest.js'
import { SharedWants } from '../src/fetch/shared-wants.js'
import { sha256Ref, seededBytes, streamOf } from './helpers/data.js'
import { startDaemon } from './helpers/daemons.js'
import { until } from './helpers/swarm.js'
import { verifyChunk } from '../src/chunks/cid.js'
import { createHash } from 'node:crypto'

const MiB = 1024 * 1024

function want (bytes: Buffer, index: number): { chunk: ReturnType<typeof verifyChunk>, w: { digest: Uint8Array, key: string, length: number, offset: number, indices: number[] } } {
  const digest = createHash('sha256').update(bytes).digest()
  return { chunk: verifyChunk(digest, bytes), w: { digest, key: digest.toString('latin1'), length: bytes.length, offset: 0, indices: [index] } }
}

t.test('claims: the first fetch to want a chunk gets it, the others wait for its copy or get it back', async t => {
  const shared = new SharedWants()
  const x = want(Buffer.from('x'), 0)
  const y = want(Buffer.from('y'), 1)
  const a = {}
  const b = {}
  t.same(shared.claim(a, [x.w, y.w]).mine.length, 2, 'a claims both')
  const second = shared.claim(b, [x.w, y.w])
  t.equal(second.mine.length, 0, 'b fetches nothing a fetches')
  t.equal(shared.claim(a, [x.w]).mine.length, 1, 'a asking again keeps its own claim')
  shared.stored(a, [x.chunk], [x.w])
  t.same((await second.theirs[0].claimed)?.bytes, x.chunk.bytes, 'b gets x from a\'s copy')
  shared.releaseAll(a, [x.w, y.w])
  t.equal(await second.theirs[1].claimed, undefined, 'y was let go: b fetches it itself')
  t.equal(shared.size, 0, 'nothing left claimed')
})

t.test('two versions of an image fetched at once move their shared chunks once', async t => {
  const v1 = seededBytes(24 * MiB, 'shared-v1')
  const v2 = Buffer.concat([v1.subarray(0, 12 * MiB), seededBytes(MiB, 'shared-v2'), v1.subarray(13 * MiB)])
  const a = await startDaemon(t)
  const r1 = (await a.client.importStream(streamOf(v1), { meta: { type: 'machine', name: 'v1' } })).record
  const r2 = (await a.client.importStream(streamOf(v2), { meta: { type: 'machine', name: 'v2' } })).record
  const distinct = new Map<string, number>()
  let manifests = 0
  for (const r of [r1, r2]) {
    const m = await a.daemon.local.store.getManifest(r)
    manifests += encodeManifest(m).length
    for (const e of chunkEntries(m)) distinct.set(Buffer.from(e.digest).toString('hex'), e.length)
  }
  const distinctBytes = [...distinct.values()].reduce((s, n) => s + n, 0)
  t.ok(distinctBytes < v1.length + 3 * MiB, `the two share most chunks (${(distinctBytes / MiB).toFixed(1)} MiB distinct of ${(2 * v1.length / MiB).toFixed(0)} MiB)`)

  const b = await startDaemon(t, { bootstrap: [a.addr] })
  await until('B is connected to A', () => b.daemon.peer.getConnections().length > 0, 20_000)
  const fetched = await b.client.call<{ ok: boolean, images: Array<{ bytes: { local: number, peer: number, origin: number } }> }>('POST', '/v1/fetch?wait=true', { refs: [r1.ref, r2.ref] })
  t.equal(fetched.ok, true, JSON.stringify(fetched))
  const fromPeers = fetched.images.reduce((s, i) => s + i.bytes.peer, 0)
  t.equal(fromPeers, distinctBytes + manifests, `each distinct chunk came from the peer once (${fromPeers} bytes), plus the two manifests`)
  for (const [r, bytes] of [[r1, v1], [r2, v2]] as const) {
    const got = Buffer.concat(await (await b.client.send('GET', `/v1/images/${r.ref}`)).toArray())
    t.equal(sha256Ref(got), sha256Ref(bytes), `${r.name} byte-exact`)
  }
  t.equal(b.daemon.fetcher.shared.size, 0, 'no claim outlives the fetches')
})
