import { createHash, generateKeyPairSync } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import t from 'tap'
import { BundleReader } from '../src/bundle/bundle-reader.js'
import { importBundle } from '../src/bundle/bundle-import.js'
import { writeBundle } from '../src/bundle/bundle-writer.js'
import { CarReader } from '../src/bundle/car-reader.js'
import { signerOf } from '../src/bundle/operator-key.js'
import { readEnvelope, signedPayload } from '../src/bundle/signature.js'
import { sha256 } from '../src/chunks/cid.js'
import { MAX_CHUNK_SIZE, validateChunkerParams } from '../src/chunks/fastcdc.js'
import {
  IMAGE_TYPES, ManifestBuilder, chunkCount, chunkEntries, decodeManifest, encodeManifest, manifestCid, type Manifest
} from '../src/chunks/manifest.js'
import { BundleInvalidError, InvalidManifestError } from '../src/errors.js'
import { LevelStore } from '../src/store/level-store.js'
import { ingest } from '../src/store/ingest.js'
import { readImage } from '../src/store/read-image.js'
import { seededBytes } from './helpers/data.js'
import { FIELD_NAMES, anyCid, concat, dagValue, fuzzParams, mutate, mutations, ownErrorOr, ownErrorOrAsync, piecesOf, type Mutation } from './helpers/fuzz.js'

/*
 * Fuzzing of manifests (from peers, origins and bundles) and of bundles (CAR files from anyone).
 * The bundles are made by the project's own writer from a small store, then damaged; a reader either
 * refuses them with our error or yields only what it checked (every chunk hashes to its CID).
 */

// ---------------------------------------------------------------------------------------------
// manifests

const CHUNKER = { min: 64, avg: 256, max: 1024 }

const manifestArb: fc.Arbitrary<Manifest> = fc.record({
  lengths: fc.array(fc.integer({ min: 1, max: CHUNKER.max }), { maxLength: 20 }),
  seed: fc.nat(),
  type: fc.constantFrom(...IMAGE_TYPES),
  name: fc.string({ maxLength: 20 }),
  format: fc.constantFrom('', 'raw', 'qcow2')
}).map(({ lengths, seed, type, name, format }) => {
  const b = new ManifestBuilder()
  lengths.forEach((len, i) => { b.add(sha256(Buffer.from(`${seed}/${i}`)), len) })
  return b.build(sha256(Buffer.from(String(seed))), CHUNKER, { type, name, format })
})

/** The invariants every decoded manifest keeps: what later code relies on without checking again. */
function manifestHolds (m: Manifest): boolean {
  validateChunkerParams(m.chunker)
  const n = chunkCount(m)
  let total = 0
  for (const e of chunkEntries(m)) {
    if (e.length < 1 || e.length > m.chunker.max || e.length > MAX_CHUNK_SIZE || e.offset !== total) return false
    total += e.length
  }
  return Number.isInteger(n) && m.chunkLengths.length === 4 * n && m.digest.length === 32 && total === m.size &&
    IMAGE_TYPES.includes(m.meta.type) && typeof m.meta.name === 'string' && typeof m.meta.format === 'string'
}

/** A valid manifest's dag-cbor map with one field (at any depth) replaced by an arbitrary value. */
const manifestWithField = fc.tuple(manifestArb, fc.constantFrom('v', 'digest', 'size', 'chunker', 'chunker.alg', 'chunker.min', 'chunker.avg',
  'chunker.max', 'chunks', 'chunks.sha256', 'chunks.len', 'meta', 'meta.type', 'meta.name', 'meta.format'), dagValue)
  .map(([m, path, v]) => {
    const o = dagCbor.decode(encodeManifest(m)) as Record<string, any>
    const [a, b] = path.split('.')
    if (b === undefined) o[a] = v
    else if (o[a] != null) o[a][b] = v
    try { return dagCbor.encode(o) } catch { return encodeManifest(m) }
  })

t.test('manifests: valid ones round-trip and keep their CID', async () => {
  await fc.assert(fc.property(manifestArb, m => {
    const bytes = encodeManifest(m)
    const back = decodeManifest(bytes, manifestCid(bytes))
    return manifestHolds(back) && Buffer.from(encodeManifest(back)).equals(bytes)
  }), fuzzParams(300))
})

t.test('manifests: damaged or hostile bytes decode to a consistent manifest or throw InvalidManifestError', async () => {
  await fc.assert(fc.property(fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc.tuple(manifestArb.map(encodeManifest), mutations).map(([b, ops]) => mutate(b, ops)),
    manifestWithField,
    fc.dictionary(fc.constantFrom(...FIELD_NAMES), dagValue, { maxKeys: 8 }).map(o => { try { return dagCbor.encode(o) } catch { return new Uint8Array(0) } })
  ), bytes => {
    const m = ownErrorOr('decodeManifest', () => decodeManifest(bytes))
    if (m === undefined) return true
    const again = decodeManifest(encodeManifest(m))
    return manifestHolds(m) && Buffer.from(encodeManifest(again)).equals(encodeManifest(m))
  }), fuzzParams(600))
  // Bytes that do not hash to the CID asked for are refused whatever they hold.
  await fc.assert(fc.property(manifestArb, mutations, (m, ops) => {
    const bytes = encodeManifest(m)
    const bad = mutate(bytes, ops)
    const got = ownErrorOr('decodeManifest', () => decodeManifest(bad, manifestCid(bytes)))
    return got === undefined || Buffer.from(bad).equals(bytes)
  }), fuzzParams(300))
})

t.test('manifest regressions', async t => {
  // Fields whose String() throws (a map with a `toString` key) are refused with our error, not a TypeError.
  const valid = dagCbor.decode(encodeManifest(fc.sample(manifestArb, { numRuns: 1, seed: 1 })[0])) as Record<string, any>
  for (const field of ['v', 'size']) {
    t.throws(() => decodeManifest(dagCbor.encode({ ...valid, [field]: { toString: 1 } })), InvalidManifestError, field)
  }
  t.throws(() => decodeManifest(dagCbor.encode({ ...valid, chunker: { ...valid.chunker, alg: { toString: 1 } } })), InvalidManifestError, 'chunker.alg')
  t.throws(() => decodeManifest(dagCbor.encode({ ...valid, meta: { ...valid.meta, type: { toString: 1 } } })), InvalidManifestError, 'meta.type')
  t.throws(() => decodeManifest(dagCbor.encode({ ...valid, chunks: 7 })), InvalidManifestError, 'chunks not a map')
})

// ---------------------------------------------------------------------------------------------
// bundles, made by the project's writer from a small in-memory store

interface Bundles { unsigned: Uint8Array, signed: Uint8Array, images: Map<string, Buffer> }
let bundles: Bundles

t.before(async () => {
  const store = await LevelStore.open()
  try {
    const images = new Map<string, Buffer>()
    const refs: string[] = []
    // b begins with all of a, so the bundle shares chunks between images; c is empty.
    const a = seededBytes(3000, 'fuzz-a')
    for (const [name, bytes] of [['a', a], ['b', Buffer.concat([a, seededBytes(2000, 'fuzz-b')])], ['c', Buffer.alloc(0)]] as const) {
      const r = await ingest(store, piecesOf(bytes), { meta: { type: 'machine', name, format: 'raw' }, chunker: CHUNKER })
      refs.push(r.record.ref)
      images.set(r.record.ref, bytes)
    }
    const collect = async (it: AsyncIterable<Uint8Array>): Promise<Uint8Array> => { const out: Uint8Array[] = []; for await (const p of it) out.push(p); return concat(...out) }
    const { privateKey } = generateKeyPairSync('ed25519')
    bundles = {
      unsigned: await collect(writeBundle(store, refs)),
      signed: await collect(writeBundle(store, refs, { signer: signerOf(privateKey) })),
      images
    }
  } finally {
    await store.close()
  }
})

const bundleInput = fc.record({
  signed: fc.boolean(),
  ops: fc.array(fc.tuple(fc.nat(), mutations), { maxLength: 2 }),
  sizes: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 4 }),
  // Short noise instead of a bundle, now and then.
  noise: fc.option(fc.uint8Array({ maxLength: 12 }), { freq: 6, nil: undefined })
})

/** A writer-made bundle with mutations. Positions are biased towards the header and the first blocks, where the framing is. */
function damaged ({ signed, ops }: { signed: boolean, ops: Array<[number, Mutation[]]> }): Uint8Array {
  let b = signed ? bundles.signed : bundles.unsigned
  for (const [where, m] of ops) {
    const at = where % 3 === 0 ? where % 400 : where
    b = mutate(b, m.map(x => ('at' in x ? { ...x, at: at + (x.at % 8) } : x)))
  }
  return b
}

t.test('the writer\'s bundles read back whole', async t => {
  for (const signed of [false, true]) {
    const reader = await BundleReader.open(piecesOf(signed ? bundles.signed : bundles.unsigned, [333]))
    let n = 0
    let bad = 0
    for await (const c of reader.chunks()) { n++; if (!Buffer.from(sha256(c.bytes)).equals(c.digest)) bad++ }
    t.equal(bad, 0, 'every chunk hashes to its digest')
    t.equal([...reader.missing()].length, 0, 'no chunk missing')
    t.equal(reader.images.length, 3)
    t.equal(reader.signer !== undefined, signed)
    t.ok(n > 5, `${n} chunks`)
  }
})

t.test('CAR reader: damaged bundles end in BundleInvalidError or a clean end, never reading past the input', async () => {
  await fc.assert(fc.asyncProperty(bundleInput, async input => {
    const bytes = input.noise ?? damaged(input)
    return await ownErrorOrAsync('CarReader', async () => {
      const car = await CarReader.open(piecesOf(bytes, input.sizes))
      let held = 0
      for (let block = await car.next(); block !== undefined; block = await car.next()) held += block.bytes.length
      return car.bytesRead === bytes.length && held <= bytes.length
    }) ?? true
  }), fuzzParams(300))
})

t.test('bundle reader: damaged bundles yield only verified chunks that a manifest names, each once', async () => {
  await fc.assert(fc.asyncProperty(bundleInput, async input => {
    const bytes = damaged(input)
    const seen = new Set<string>()
    await ownErrorOrAsync('BundleReader', async () => {
      const reader = await BundleReader.open(piecesOf(bytes, input.sizes))
      const named = new Set<string>()
      for (const { manifest } of reader.images) for (const e of chunkEntries(manifest)) named.add(Buffer.from(e.digest).toString('hex'))
      for await (const c of reader.chunks()) {
        const key = Buffer.from(c.digest).toString('hex')
        if (!Buffer.from(sha256(c.bytes)).equals(c.digest) || !named.has(key) || seen.has(key)) throw new Error(`an unchecked chunk ${key}`)
        seen.add(key)
      }
      if (reader.signer !== undefined && !input.signed && Buffer.from(bytes).equals(bundles.unsigned)) throw new Error('a signer from nowhere')
    })
    return true
  }), fuzzParams(300))
})

t.test('bundle import: a damaged bundle imports nothing, or images whose bytes are the originals', async () => {
  await fc.assert(fc.asyncProperty(bundleInput, async input => {
    const bytes = damaged(input)
    const store = await LevelStore.open()
    try {
      const result = await ownErrorOrAsync('importBundle', async () => await importBundle(store, piecesOf(bytes, input.sizes)))
      const listed = await store.listImages()
      if (result === undefined) return listed.every(r => r.state !== 'available')
      for (const record of result.images) {
        const out: Uint8Array[] = []
        for await (const window of readImage(store, await store.getManifest(record))) for (const c of window) out.push(c.bytes)
        const got = concat(...out)
        if (`sha256:${createHash('sha256').update(got).digest('hex')}` !== record.ref) return false
      }
      return true
    } finally {
      await store.close()
    }
  }), fuzzParams(60))
})

t.test('signature envelopes: hostile fields are refused with BundleInvalidError', async t => {
  const envelope = fc.record({
    imgswarmBundle: fc.oneof(fc.constant(1), dagValue),
    images: fc.oneof(fc.array(anyCid, { minLength: 1, maxLength: 3 }), dagValue),
    publicKey: fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), dagValue),
    signature: fc.oneof(fc.uint8Array({ minLength: 64, maxLength: 64 }), dagValue)
  }, { requiredKeys: ['imgswarmBundle'] })
  await fc.assert(fc.property(envelope, e => {
    let bytes: Uint8Array
    try { bytes = dagCbor.encode(e) } catch { return true }
    ownErrorOr('readEnvelope', () => readEnvelope(bytes))
    return true
  }), fuzzParams(400))
  // Not a signature of these images by this key: refused, never taken as unsigned.
  const { privateKey } = generateKeyPairSync('ed25519')
  const signer = signerOf(privateKey)
  const images = fc.sample(fc.array(anyCid, { minLength: 1, maxLength: 2 }), { numRuns: 1, seed: 2 })[0]
  const good = { imgswarmBundle: 1, images, publicKey: signer.publicKey, signature: signer.sign(signedPayload(images)) }
  t.ok(readEnvelope(dagCbor.encode(good)))
  t.throws(() => readEnvelope(dagCbor.encode({ ...good, signature: new Uint8Array(64) })), BundleInvalidError)
  t.throws(() => readEnvelope(dagCbor.encode({ ...good, imgswarmBundle: { toString: 1 } })), BundleInvalidError)
})

t.test('CAR regressions', async t => {
  // A zero-length header at the very end of the input.
  await t.rejects(CarReader.open(piecesOf(Uint8Array.of(0))), BundleInvalidError)
  await t.rejects(BundleReader.open(piecesOf(Uint8Array.of(0))), BundleInvalidError)
})
