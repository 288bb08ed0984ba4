import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { InvalidManifestError } from '../errors.js'
import { describe } from '../util/format.js'
import { sha256 } from './cid.js'
import { CHUNKER_ALGORITHM, MAX_CHUNK_SIZE, validateChunkerParams, type ChunkerParams } from './fastcdc.js'

export const MANIFEST_VERSION = 1

/** Bounds what a manifest from an untrusted source may make us allocate: ~1.8 M chunks, ~115 GiB at 64 KiB. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024

import { IMAGE_TYPES, type ImageType } from './image-types.js'
export { IMAGE_TYPES, type ImageType }

/** What an operator says about an image. Part of the manifest, so it is covered by the manifest CID. */
export interface ImageMeta {
  type: ImageType
  name: string
  /** Disk format as Glance names it: raw, qcow2, vmdk, … or the empty string when unknown. */
  format: string
}

/**
 * The recipe of an image. Chunk CIDs are all CIDv1/raw/sha2-256, so they are stored as packed 32-byte
 * digests and packed big-endian uint32 lengths: 36 bytes a chunk, ~5.8 MB for a 10 GiB image.
 * The encoding is deterministic (dag-cbor) and holds no timestamps, so the same file imported with
 * the same metadata and chunker on any node yields the same manifest CID.
 */
export interface Manifest {
  version: number
  /** sha256 of the whole image. */
  digest: Uint8Array
  size: number
  chunker: ChunkerParams & { algorithm: string }
  /** 32 × n bytes: the sha256 of each chunk, in order. */
  chunkDigests: Uint8Array
  /** 4 × n bytes: each chunk's length, big-endian. */
  chunkLengths: Uint8Array
  meta: ImageMeta
}

/** One chunk's place in an image. */
export interface ChunkEntry {
  index: number
  digest: Uint8Array
  offset: number
  length: number
}

export function chunkCount (m: Manifest): number {
  return m.chunkDigests.length / 32
}

/** The chunks of an image in order, with their offsets. */
export function * chunkEntries (m: Manifest, from = 0): Generator<ChunkEntry> {
  const n = chunkCount(m)
  const lengths = new DataView(m.chunkLengths.buffer, m.chunkLengths.byteOffset, m.chunkLengths.byteLength)
  let offset = 0
  for (let i = 0; i < n; i++) {
    const length = lengths.getUint32(i * 4)
    if (i >= from) yield { index: i, digest: m.chunkDigests.subarray(i * 32, i * 32 + 32), offset, length }
    offset += length
  }
}

/** Collects chunk digests and lengths as an import produces them. */
export class ManifestBuilder {
  private digests: Uint8Array = new Uint8Array(32 * 1024)
  private lengths: Uint8Array = new Uint8Array(4 * 1024)
  private n = 0
  private size = 0

  add (digest: Uint8Array, length: number): void {
    if ((this.n + 1) * 32 > this.digests.length) {
      this.digests = grow(this.digests)
      this.lengths = grow(this.lengths)
    }
    this.digests.set(digest, this.n * 32)
    new DataView(this.lengths.buffer).setUint32(this.n * 4, length)
    this.n++
    this.size += length
  }

  build (digest: Uint8Array, chunker: ChunkerParams, meta: ImageMeta): Manifest {
    return {
      version: MANIFEST_VERSION,
      digest,
      size: this.size,
      chunker: { algorithm: CHUNKER_ALGORITHM, min: chunker.min, avg: chunker.avg, max: chunker.max },
      chunkDigests: this.digests.slice(0, this.n * 32),
      chunkLengths: this.lengths.slice(0, this.n * 4),
      meta: { ...meta }
    }
  }
}

function grow (a: Uint8Array): Uint8Array {
  const b = new Uint8Array(a.length * 2)
  b.set(a)
  return b
}

/** The deterministic dag-cbor bytes of a manifest. */
export function encodeManifest (m: Manifest): Uint8Array {
  return dagCbor.encode({
    v: m.version,
    digest: m.digest,
    size: m.size,
    chunker: { alg: m.chunker.algorithm, min: m.chunker.min, avg: m.chunker.avg, max: m.chunker.max },
    chunks: { sha256: m.chunkDigests, len: m.chunkLengths },
    meta: { type: m.meta.type, name: m.meta.name, format: m.meta.format }
  })
}

/** The CIDv1 (dag-cbor, sha2-256) of encoded manifest bytes. */
export function manifestCid (bytes: Uint8Array): CID {
  return CID.createV1(dagCbor.code, Digest.create(sha256Hasher.code, sha256(bytes)))
}

/**
 * Decodes and checks a manifest from any source. When `expected` is given, the bytes must hash to it.
 * Everything that later code relies on is checked here: the sizes add up, every chunk is within the
 * chunker's bounds, the arrays have matching lengths.
 */
export function decodeManifest (bytes: Uint8Array, expected?: CID): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw new InvalidManifestError(`manifest of ${bytes.length} bytes exceeds the ${MAX_MANIFEST_BYTES}-byte limit`)
  if (expected != null) {
    const actual = manifestCid(bytes)
    if (!actual.equals(expected)) throw new InvalidManifestError(`manifest bytes hash to ${actual.toString()}, expected ${String(expected)}`)
  }
  let raw: unknown
  try {
    raw = dagCbor.decode(bytes)
  } catch (err) {
    throw new InvalidManifestError(`manifest is not valid dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  const o = raw as Record<string, any>
  const fail = (why: string): never => { throw new InvalidManifestError(`invalid manifest: ${why}`) }
  if (o == null || typeof o !== 'object') fail('not a map')
  if (o.v !== MANIFEST_VERSION) fail(`unsupported manifest version ${describe(o.v)} (this imgswarm reads ${MANIFEST_VERSION})`)
  if (!(o.digest instanceof Uint8Array) || o.digest.length !== 32) fail('digest is not 32 bytes')
  if (!Number.isSafeInteger(o.size) || o.size < 0) fail('size is not a non-negative integer')
  const c = o.chunker ?? {}
  if (c.alg !== CHUNKER_ALGORITHM) fail(`unknown chunker ${describe(c.alg)}`)
  const chunker = { algorithm: c.alg as string, min: c.min, avg: c.avg, max: c.max }
  try { validateChunkerParams(chunker) } catch (err) { fail((err as Error).message) }
  const digests = o.chunks?.sha256
  const lengths = o.chunks?.len
  if (!(digests instanceof Uint8Array) || !(lengths instanceof Uint8Array)) fail('chunk lists missing')
  if (digests.length % 32 !== 0 || lengths.length !== digests.length / 8) fail('chunk lists have mismatched lengths')
  const view = new DataView(lengths.buffer, lengths.byteOffset, lengths.byteLength)
  const n = digests.length / 32
  let total = 0
  for (let i = 0; i < n; i++) {
    const len = view.getUint32(i * 4)
    if (len === 0 || len > chunker.max || len > MAX_CHUNK_SIZE) fail(`chunk ${i} has length ${len}, outside 1…${chunker.max}`)
    total += len
  }
  if (total !== o.size) fail(`chunk lengths add up to ${total}, but size is ${describe(o.size)}`)
  const meta = o.meta ?? {}
  if (!IMAGE_TYPES.includes(meta.type)) fail(`unknown image type ${describe(meta.type)}`)
  if (typeof meta.name !== 'string' || typeof meta.format !== 'string') fail('name and format must be strings')
  return {
    version: o.v,
    digest: o.digest,
    size: o.size,
    chunker,
    chunkDigests: digests,
    chunkLengths: lengths,
    meta: { type: meta.type, name: meta.name, format: meta.format }
  }
}
