import '../src/util/polyfills.js'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import t from 'tap'
import { chunkOf, verifyChunk } from '../src/chunks/cid.js'
import { DEFAULT_CHUNKER, MAX_CHUNK_SIZE } from '../src/chunks/fastcdc.js'
import { ManifestBuilder, decodeManifest, encodeManifest, manifestCid } from '../src/chunks/manifest.js'
import { ProtocolError, RemoteError } from '../src/errors.js'
import { Bitfield } from '../src/peer/bitfield.js'
import { handle, onlyFrame, request } from '../src/peer/exchange.js'
import {
  CHUNKS, HAVE, MANIFEST, MANIFEST_PIECE_BYTES, MAX_CHUNK_BATCH, MAX_MANIFEST_CHUNKS, PROTOCOLS,
  decodeChunksRequest, decodeChunksResponse, decodeHaveRequest, decodeHaveResponse, decodeManifestRequest,
  decodeManifestResponse, encodeChunksRequest, encodeChunksResponse, encodeError, encodeHaveRequest,
  encodeHaveResponse, encodeManifestRequest, encodeManifestResponse, manifestResponseFrames,
  readChunksResponse, readHaveResponse, readManifestResponse
} from '../src/peer/protocols.js'
import { seededBytes } from './helpers/data.js'
import { spawnPeers } from './helpers/peers.js'

const digest = (seed: string): Uint8Array => chunkOf(seededBytes(100, seed)).digest

async function * framesOf (frames: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield * frames
}

function sampleManifest (chunks: Uint8Array[]): { bytes: Uint8Array, cid: CID } {
  const b = new ManifestBuilder()
  for (const c of chunks) b.add(chunkOf(c).digest, c.length)
  const m = b.build(chunkOf(Buffer.concat(chunks)).digest, DEFAULT_CHUNKER, { type: 'machine', name: 'test', format: 'raw' })
  const bytes = encodeManifest(m)
  return { bytes, cid: manifestCid(bytes) }
}

t.test('protocol ids are versioned under /imgswarm and frame bounds cover their largest message', async t => {
  t.same(PROTOCOLS.map(p => p.id), ['/imgswarm/manifest/1.0.0', '/imgswarm/have/1.0.0', '/imgswarm/chunks/1.0.0', '/imgswarm/have-updates/1.0.0'])
  const fullBatch = encodeChunksRequest({ digests: Array.from({ length: MAX_CHUNK_BATCH }, (_, i) => digest(String(i))) })
  t.ok(fullBatch.length <= CHUNKS.maxRequestFrameBytes, `a full batch is ${fullBatch.length} bytes`)
  const biggestHave = encodeHaveResponse({ type: 'have', bitfield: new Bitfield(MAX_MANIFEST_CHUNKS) })
  t.equal(biggestHave.length, HAVE.maxResponseFrameBytes, 'the largest bitfield fits exactly')
  t.equal(encodeChunksResponse({ type: 'chunk', bytes: new Uint8Array(MAX_CHUNK_SIZE) }).length, CHUNKS.maxResponseFrameBytes)
  t.equal(encodeManifestResponse({ type: 'piece', bytes: new Uint8Array(MANIFEST_PIECE_BYTES) }).length, MANIFEST.maxResponseFrameBytes)
})

t.test('manifest messages round-trip and are validated', async t => {
  const { cid } = sampleManifest([seededBytes(1000)])
  const d = digest('img')
  t.same(decodeManifestRequest(encodeManifestRequest({ digest: d })), { digest: d })
  t.ok((decodeManifestRequest(encodeManifestRequest({ cid })) as { cid: typeof cid }).cid.equals(cid))
  t.throws(() => decodeManifestRequest(dagCbor.encode({ digest: d, cid })), ProtocolError, 'not both')
  t.throws(() => decodeManifestRequest(dagCbor.encode({})), ProtocolError, 'not neither')
  t.throws(() => decodeManifestRequest(dagCbor.encode({ digest: d.subarray(1) })), ProtocolError, '31-byte digest')
  t.ok((decodeManifestRequest(dagCbor.encode({ cid, priority: 1 })) as { cid: typeof cid }).cid.equals(cid), 'unknown fields are ignored')
  t.throws(() => decodeManifestRequest(Uint8Array.of(0xff, 0x00)), ProtocolError, 'not cbor')
  t.throws(() => decodeManifestRequest(dagCbor.encode([1, 2])), ProtocolError, 'not a map')
  t.throws(() => encodeManifestRequest({ cid: chunkCid() }), ProtocolError, 'a chunk CID is not a manifest CID')

  t.same(decodeManifestResponse(encodeManifestResponse({ type: 'header', size: 300 })), { type: 'header', size: 300 })
  t.same(decodeManifestResponse(encodeManifestResponse({ type: 'not-found' })), { type: 'not-found' })
  t.same(decodeManifestResponse(encodeError({ reason: 'busy', message: 'later' })), { type: 'error', reason: 'busy', message: 'later' })
  t.throws(() => decodeManifestResponse(Uint8Array.of(0x01, 0x80, 0x80, 0x80, 0x80, 0x40)), /exceeds/, 'a header over the manifest limit')
  t.throws(() => decodeManifestResponse(Uint8Array.of(0x05, 1)), /unknown response kind 0x05/, 'a chunks frame on the manifest protocol')
  t.throws(() => decodeManifestResponse(new Uint8Array(0)), ProtocolError)
  t.throws(() => decodeManifestResponse(Uint8Array.of(0x03, 0)), ProtocolError, 'not-found has no body')
})

/** A raw-codec CID: valid, but not a manifest's. */
function chunkCid (): CID {
  return CID.createV1(0x55, manifestCid(new Uint8Array(0)).multihash)
}

t.test('a manifest is sent in pieces and reassembled; short, long and out-of-order answers are refused', async t => {
  const bytes = seededBytes(2 * MANIFEST_PIECE_BYTES + 17)
  const frames = [...manifestResponseFrames(bytes)]
  t.equal(frames.length, 4, 'a header and three pieces')
  t.ok(Buffer.from((await readManifestResponse(framesOf(frames)))!).equals(bytes))
  t.equal(await readManifestResponse(framesOf([encodeManifestResponse({ type: 'not-found' })])), null)
  t.same(await readManifestResponse(framesOf([...manifestResponseFrames(new Uint8Array(0))])), new Uint8Array(0), 'an empty manifest is a header alone')
  await t.rejects(readManifestResponse(framesOf(frames.slice(0, 3))), /ended early/)
  await t.rejects(readManifestResponse(framesOf([...frames, frames[1]])), /after the end/)
  await t.rejects(readManifestResponse(framesOf(frames.slice(1))), /unexpected piece/)
  await t.rejects(readManifestResponse(framesOf([])), /ended early/)
  await t.rejects(readManifestResponse(framesOf([frames[0], encodeError({ reason: 'internal', message: 'disk' })])), RemoteError)
})

t.test('have messages carry a bitfield over chunk indices', async t => {
  const { cid } = sampleManifest([seededBytes(10)])
  t.ok(decodeHaveRequest(encodeHaveRequest({ manifest: cid })).manifest.equals(cid))
  t.throws(() => decodeHaveRequest(dagCbor.encode({ manifest: 'bafy' })), ProtocolError)

  const bits = Bitfield.from([true, false, true, true, false, false, false, false, false, true])
  t.equal(bits.count(), 4)
  const msg = decodeHaveResponse(encodeHaveResponse({ type: 'have', bitfield: bits }))
  if (msg.type !== 'have') throw new Error('expected have')
  t.equal(msg.bitfield.size, 10)
  t.same([...Array(10).keys()].filter(i => msg.bitfield.has(i)), [0, 2, 3, 9])
  t.same([...msg.bitfield.bytes], [0b10110000, 0b01000000], 'most significant bit first')

  t.throws(() => decodeHaveResponse(Uint8Array.of(0x04, 10, 0xff, 0xff)), /bits set past the last chunk/)
  t.throws(() => decodeHaveResponse(Uint8Array.of(0x04, 10, 0xff)), /has 2 bytes, not 1/)
  t.throws(() => decodeHaveResponse(Uint8Array.of(0x04, 0x80)), /malformed chunk count/)
  t.equal(await readHaveResponse(framesOf([encodeHaveResponse({ type: 'not-found' })])), null)
  await t.rejects(readHaveResponse(framesOf([])), ProtocolError)
  await t.rejects(readHaveResponse(framesOf([encodeHaveResponse({ type: 'have', bitfield: bits }), encodeHaveResponse({ type: 'have', bitfield: bits })])), /more than one frame/)
})

t.test('chunks: batches are bounded; every requested digest gets an answer, in order', async t => {
  const ds = ['a', 'b', 'c'].map(digest)
  t.same(decodeChunksRequest(encodeChunksRequest({ digests: ds })).digests.map(d => [...d]), ds.map(d => [...d]))
  t.throws(() => encodeChunksRequest({ digests: [] }), /1 to 256/)
  t.throws(() => encodeChunksRequest({ digests: Array.from({ length: MAX_CHUNK_BATCH + 1 }, () => ds[0]) }), /not 257/)
  t.throws(() => decodeChunksRequest(dagCbor.encode({ digests: new Uint8Array(33) })), /multiple of 32/)

  const bytes = seededBytes(500)
  t.same(decodeChunksResponse(encodeChunksResponse({ type: 'missing' })), { type: 'missing' })
  const answer = [encodeChunksResponse({ type: 'chunk', bytes }), encodeChunksResponse({ type: 'missing' }), encodeChunksResponse({ type: 'chunk', bytes })]
  const results = []
  for await (const r of readChunksResponse(ds, framesOf(answer))) results.push(r)
  t.same(results.map(r => 'missing' in r ? 'missing' : r.bytes.length), [500, 'missing', 500])
  t.equal(results[1].digest, ds[1], 'each result names the digest it answers')

  await t.rejects(async () => { for await (const _r of readChunksResponse(ds, framesOf(answer.slice(0, 2)))); }, /ended after 2 of 3/)
  await t.rejects(async () => { for await (const _r of readChunksResponse(ds.slice(0, 2), framesOf(answer))); }, /more answers than the 2/)
  const seen: unknown[] = []
  await t.rejects(async () => {
    for await (const r of readChunksResponse(ds, framesOf([answer[0], encodeError({ reason: 'busy', message: 'too many' })]))) seen.push(r)
  }, { code: 'IMGSWARM_REMOTE', reason: 'busy' })
  t.equal(seen.length, 1, 'the chunk before the error is still delivered')
  t.throws(() => decodeChunksResponse(Uint8Array.of(0x05)), /an empty chunk/)
})

t.test('error frames are cut to a bounded size; unknown reasons are read as internal', async t => {
  const long = encodeError({ reason: 'internal', message: 'x'.repeat(5000) })
  t.equal(long.length, 2 + 512)
  t.same(decodeChunksResponse(Uint8Array.of(0xff, 99, 0x68, 0x69)), { type: 'error', reason: 'internal', message: 'hi' })
  t.throws(() => decodeChunksResponse(Uint8Array.of(0xff)), /without a reason/)
})

t.test('end to end: a requester gets a manifest, a have bitfield and a batch of chunks from a peer', async t => {
  const [a, b] = await spawnPeers(t, 2)
  const chunks = [seededBytes(70_000, 'c1'), seededBytes(200_000, 'c2'), seededBytes(3, 'c3')]
  const { bytes: manifestBytes, cid } = sampleManifest(chunks)
  const held = new Map([chunks[0], chunks[2]].map(c => [Buffer.from(chunkOf(c).digest).toString('hex'), c]))

  await handle(b, MANIFEST, async (frames, send) => {
    const req = decodeManifestRequest(await onlyFrame(frames, MANIFEST))
    if ('cid' in req && req.cid.equals(cid)) for (const f of manifestResponseFrames(manifestBytes)) await send(f)
    else await send(encodeManifestResponse({ type: 'not-found' }))
  })
  await handle(b, HAVE, async (frames, send) => {
    decodeHaveRequest(await onlyFrame(frames, HAVE))
    await send(encodeHaveResponse({ type: 'have', bitfield: Bitfield.from(chunks.map(c => held.has(Buffer.from(chunkOf(c).digest).toString('hex')))) }))
  })
  await handle(b, CHUNKS, async (frames, send) => {
    for (const d of decodeChunksRequest(await onlyFrame(frames, CHUNKS)).digests) {
      const c = held.get(Buffer.from(d).toString('hex'))
      await send(encodeChunksResponse(c != null ? { type: 'chunk', bytes: c } : { type: 'missing' }))
    }
  })

  const got = await readManifestResponse(request(a, b.getMultiaddrs(), MANIFEST, [encodeManifestRequest({ cid })]))
  t.ok(got != null && decodeManifest(got, cid).size === 270_003, 'the manifest checks out against its CID')
  t.equal(await readManifestResponse(request(a, b.peerId, MANIFEST, [encodeManifestRequest({ digest: digest('other') })])), null, 'unknown: not-found')

  const have = await readHaveResponse(request(a, b.peerId, HAVE, [encodeHaveRequest({ manifest: cid })]))
  t.same([0, 1, 2].map(i => have?.has(i)), [true, false, true])

  const wanted = chunks.map(c => chunkOf(c).digest)
  const outcome: string[] = []
  for await (const r of readChunksResponse(wanted, request(a, b.peerId, CHUNKS, [encodeChunksRequest({ digests: wanted })]))) {
    outcome.push('missing' in r ? 'missing' : `ok:${verifyChunk(r.digest, r.bytes).bytes.length}`)
  }
  t.same(outcome, ['ok:70000', 'missing', 'ok:3'], 'missing chunks are reported, not skipped')
})
