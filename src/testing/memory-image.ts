import { createCipheriv, createHash } from 'node:crypto'
import { sha256 } from '../chunks/cid.js'
import { Chunker, DEFAULT_CHUNKER, type ChunkerParams } from '../chunks/fastcdc.js'
import { ManifestBuilder, encodeManifest, manifestCid, type Manifest } from '../chunks/manifest.js'
import { OriginNotFoundError, OriginRangeError } from '../errors.js'
import type { Origin, OriginReadOptions } from '../origin/origin.js'
import { keyOf, type Want } from '../fetch/wants.js'
import type { MemoryImage, MemoryLink } from './memory-peers.js'

/** An image cut into chunks in memory, with what a fetch of it needs. */
export interface BuiltImage extends MemoryImage {
  bytes: Uint8Array
  manifest: Manifest
  /** Every distinct chunk, in image order, as the fetch of an empty node wants it. */
  wants: Want[]
  /** A chunk's bytes by its digest (shared, never copied). */
  bytesOf: (digest: Uint8Array) => Uint8Array
}

/** `size` bytes that depend only on `seed` (AES-128-CTR over zeros): no two chunks alike, the same on every run. */
export function seededImageBytes (size: number, seed = 1): Uint8Array {
  const key = createHash('sha256').update(`imgswarm-sim-${seed}`).digest()
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(size))
}

/** Chunks `bytes` with the real chunker and builds its manifest. */
export function buildImage (bytes: Uint8Array, name = 'sim', chunker: ChunkerParams = DEFAULT_CHUNKER): BuiltImage {
  const cdc = new Chunker(chunker)
  const pieces = [...cdc.push(bytes), ...cdc.finish()]
  const builder = new ManifestBuilder()
  const wants: Want[] = []
  const byKey = new Map<string, Want>()
  const chunkBytes = new Map<string, Uint8Array>()
  const digests: Uint8Array[] = []
  let offset = 0
  pieces.forEach((piece, index) => {
    const digest = sha256(piece)
    const key = keyOf(digest)
    builder.add(digest, piece.length)
    digests.push(digest)
    const w = byKey.get(key)
    if (w != null) w.indices.push(index)
    else {
      const want: Want = { digest, key, length: piece.length, offset, indices: [index] }
      byKey.set(key, want)
      wants.push(want)
      chunkBytes.set(key, piece)
    }
    offset += piece.length
  })
  const digest = sha256(bytes)
  const manifest = builder.build(digest, chunker, { type: 'machine', name, format: 'raw' })
  const manifestBytes = encodeManifest(manifest)
  return {
    hex: Buffer.from(digest).toString('hex'),
    manifestCid: manifestCid(manifestBytes).toString(),
    manifestBytes,
    digests,
    bytes,
    manifest,
    wants,
    bytesOf: d => {
      const b = chunkBytes.get(keyOf(d))
      if (b == null) throw new Error('not a chunk of this image')
      return b
    }
  }
}

/** Copies of the wants, for one fetch (the scheduler keeps its own state in them, never shared between nodes). */
export function wantsOf (image: BuiltImage): Want[] {
  return image.wants.map(w => ({ ...w, indices: [...w.indices] }))
}

export interface MemoryOriginOptions {
  /** The origin's id on the link (default 'origin'). */
  id?: string
  /** Moves bytes to the reader (see {@link MemoryLink}); reader ids come from `readerOf`. */
  link?: MemoryLink
  /** Which node reads, for the link: the simulator gives each node its own origin view. */
  reader?: string
  /** Each range read is answered in pieces of this many bytes (default 256 KiB). */
  pieceBytes?: number
  /** Delay before the first byte of each read. */
  firstByte?: () => Promise<void>
}

/** Bytes the origin sent, shared by every view of one origin. */
export interface OriginMeter { bytes: number, reads: number }

/** An origin that serves images from memory (Range-capable), through an optional link model. */
export function memoryOrigin (images: Iterable<{ hex: string, bytes: Uint8Array, manifestBytes?: Uint8Array }>, options: MemoryOriginOptions = {}, meter: OriginMeter = { bytes: 0, reads: 0 }): Origin & { meter: OriginMeter } {
  const byHex = new Map([...images].map(i => [i.hex, i]))
  const id = options.id ?? 'origin'
  const pieceBytes = options.pieceBytes ?? 256 * 1024
  return {
    url: 'memory:',
    meter,
    capabilities: { rangeRead: true, manifests: true, write: false },
    stat: async hex => { const i = byHex.get(hex); return i == null ? undefined : { size: i.bytes.length } },
    readManifest: async hex => byHex.get(hex)?.manifestBytes,
    read: (hex: string, o: OriginReadOptions = {}) => ({
      async * [Symbol.asyncIterator] () {
        const image = byHex.get(hex)
        if (image == null) throw new OriginNotFoundError(`memory: has no sha256:${hex}`)
        const start = o.offset ?? 0
        const end = o.length != null ? start + o.length : image.bytes.length
        if (end > image.bytes.length) throw new OriginRangeError(`range ${start}-${end} past the end of sha256:${hex}`)
        meter.reads++
        await options.firstByte?.()
        o.signal?.throwIfAborted()
        for (let p = start; p < end; p += pieceBytes) {
          const n = Math.min(pieceBytes, end - p)
          await options.link?.(id, options.reader ?? 'reader', n, o.signal)
          o.signal?.throwIfAborted()
          meter.bytes += n
          yield image.bytes.subarray(p, p + n)
        }
      }
    })
  }
}
