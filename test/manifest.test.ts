import t from 'tap'
import { chunkOf } from '../src/chunks/cid.js'
import { DEFAULT_CHUNKER } from '../src/chunks/fastcdc.js'
import { ManifestBuilder, chunkEntries, decodeManifest, encodeManifest, manifestCid } from '../src/chunks/manifest.js'
import { InvalidManifestError } from '../src/errors.js'
import { seededBytes } from './helpers/data.js'
import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'

function sample (): { bytes: Uint8Array, encoded: Uint8Array } {
  const b = new ManifestBuilder()
  const parts = [seededBytes(20000, 'a'), seededBytes(30000, 'b'), seededBytes(5, 'c')]
  for (const p of parts) b.add(chunkOf(p).digest, p.length)
  const digest = createHash('sha256').update(Buffer.concat(parts)).digest()
  const m = b.build(digest, DEFAULT_CHUNKER, { type: 'kernel', name: 'vmlinuz', format: 'raw' })
  return { bytes: Buffer.concat(parts), encoded: encodeManifest(m) }
}

t.test('a manifest round-trips through dag-cbor and keeps its CID', async t => {
  const { encoded } = sample()
  const cid = manifestCid(encoded)
  const m = decodeManifest(encoded, cid)
  t.equal(m.size, 50005)
  t.same(m.meta, { type: 'kernel', name: 'vmlinuz', format: 'raw' })
  t.same([...chunkEntries(m)].map(e => [e.offset, e.length]), [[0, 20000], [20000, 30000], [50000, 5]])
  t.ok(manifestCid(encodeManifest(m)).equals(cid), 're-encoding is deterministic')
  t.equal(cid.code, 0x71, 'dag-cbor CID')
})

t.test('a manifest that does not match its CID or contradicts itself is refused', async t => {
  const { encoded } = sample()
  const cid = manifestCid(encoded)
  const tampered = Uint8Array.from(encoded)
  tampered[tampered.length - 3] ^= 1
  t.throws(() => decodeManifest(tampered, cid), InvalidManifestError)
  const raw = dagCbor.decode(encoded) as any
  t.throws(() => decodeManifest(dagCbor.encode({ ...raw, size: raw.size + 1 })), /add up to/)
  t.throws(() => decodeManifest(dagCbor.encode({ ...raw, v: 99 })), /unsupported manifest version 99/)
  t.throws(() => decodeManifest(dagCbor.encode({ ...raw, meta: { ...raw.meta, type: 'bogus' } })), /unknown image type/)
  t.throws(() => decodeManifest(dagCbor.encode({ ...raw, chunks: { ...raw.chunks, len: raw.chunks.len.subarray(4) } })), /mismatched/)
  t.throws(() => decodeManifest(new Uint8Array([0xff, 0x00])), /not valid dag-cbor/)
})
