import { createHash } from 'node:crypto'
import { chunkOf, type VerifiedChunk } from '../chunks/cid.js'
import { Chunker, DEFAULT_CHUNKER, type ChunkerParams } from '../chunks/fastcdc.js'
import { ManifestBuilder, type ImageMeta } from '../chunks/manifest.js'
import { DigestMismatchError } from '../errors.js'
import type { AbortOptions } from './chunk-store.js'
import type { ImageRecord } from './image-record.js'
import type { LevelStore } from './level-store.js'

/**
 * Chunks are written in batches of about this many bytes: enough to amortise a LevelDB write, and
 * well below the write buffer (src/store/tuning.ts), since a batch larger than the buffer makes a
 * memtable and a level-0 table of its own size. 1 MiB measured ~45 MB less peak RSS than 4 MiB at
 * the same speed (docs/benchmarks.md).
 */
const BATCH_BYTES = 1024 * 1024

export interface IngestOptions extends AbortOptions {
  meta: ImageMeta
  chunker?: ChunkerParams
  /** When set, the image must hash to this `sha256:<hex>`, or nothing is recorded. */
  expectRef?: string
  /** Called with the number of input bytes consumed so far. */
  onProgress?: (bytes: number) => void
  /** Where the bytes came from, for the image's record: an import (the default) or an origin. */
  from?: 'local' | 'origin'
}

export interface IngestResult {
  record: ImageRecord
  /** Chunks that were not in the store before. */
  newChunks: number
  newBytes: number
}

/**
 * Chunks a byte stream into the store and records it as an `available` image. Memory is bounded by two
 * batches of chunks and the manifest's chunk list (36 bytes a chunk), not by the image. Chunk writes
 * overlap with reading, chunking and hashing of the next batch; the manifest, the image record and the
 * last batch land in one atomic write, so an interrupted import leaves no image, only unreferenced
 * chunks for the next `gc` (and for the retry, which finds them already stored).
 */
export async function ingest (store: LevelStore, source: AsyncIterable<Uint8Array>, options: IngestOptions): Promise<IngestResult> {
  return await store.lock.read(async () => {
    const params = options.chunker ?? DEFAULT_CHUNKER
    const chunker = new Chunker(params)
    const whole = createHash('sha256')
    const builder = new ManifestBuilder()
    let batch: VerifiedChunk[] = []
    let batchKeys = new Set<string>()
    let batchBytes = 0
    let writing: Promise<void> = Promise.resolve()
    /** Keys of the batch being written: not yet visible to hasMany, but no longer new either. */
    let writingKeys = new Set<string>()
    let newChunks = 0
    let newBytes = 0
    let consumed = 0

    // Drops chunks already stored or being stored, and returns the rest. The lookup overlaps with the
    // write in flight (LevelDB, not this thread, is the bottleneck of an import).
    const onlyNew = async (chunks: VerifiedChunk[], keys: Set<string>): Promise<VerifiedChunk[]> => {
      const present = await store.hasMany(chunks.map(c => c.digest), options)
      const fresh = chunks.filter((c, i) => !present[i] && !writingKeys.has(keyOf(c.digest)))
      await writing
      newChunks += fresh.length
      for (const c of fresh) newBytes += c.bytes.length
      writingKeys = keys
      return fresh
    }
    const flush = async (): Promise<void> => {
      const fresh = await onlyNew(batch, batchKeys)
      batch = []
      batchKeys = new Set()
      batchBytes = 0
      writing = store.putMany(fresh, options)
      writing.catch(() => {}) // observed by the next await of `writing`
    }
    const take = async (bytes: Uint8Array): Promise<void> => {
      const chunk = chunkOf(bytes)
      builder.add(chunk.digest, bytes.length)
      const key = keyOf(chunk.digest)
      if (batchKeys.has(key)) return
      batchKeys.add(key)
      batch.push(chunk)
      batchBytes += bytes.length
      if (batchBytes >= BATCH_BYTES) await flush()
    }

    try {
      for await (const piece of source) {
        options.signal?.throwIfAborted()
        whole.update(piece)
        for (const c of chunker.push(piece)) await take(c)
        consumed += piece.length
        options.onProgress?.(consumed)
      }
      for (const c of chunker.finish()) await take(c)
    } finally {
      await writing.catch(() => {})
    }
    const last = await onlyNew(batch, batchKeys)
    const digest = whole.digest()
    if (options.expectRef != null && `sha256:${digest.toString('hex')}` !== options.expectRef) {
      throw new DigestMismatchError(`image hashes to sha256:${digest.toString('hex')}, expected ${options.expectRef}`)
    }
    const manifest = builder.build(digest, params, options.meta)
    const now = new Date().toISOString()
    const previous = await store.getRecord(digest.toString('hex'))
    const size = manifest.size
    const record = await store.commitImage(manifest, {
      state: 'available',
      pinned: previous?.pinned ?? false,
      created: previous?.created ?? now,
      lastAccess: now,
      hits: previous?.hits ?? 0,
      sources: options.from === 'origin' ? { local: 0, peers: 0, origin: size } : { local: size, peers: 0, origin: 0 }
    }, last)
    return { record, newChunks, newBytes }
  })
}

function keyOf (digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')
}
