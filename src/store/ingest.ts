import { createHash, type Hash } from 'node:crypto'
import { pipe } from 'it-pipe'
import { chunkOf, type VerifiedChunk } from '../chunks/cid.js'
import { Chunker, DEFAULT_CHUNKER, type ChunkerParams } from '../chunks/fastcdc.js'
import { ManifestBuilder, type ImageMeta } from '../chunks/manifest.js'
import { DigestMismatchError } from '../errors.js'
import type { AbortOptions } from './chunk-store.js'
import type { ImageRecord } from './image-record.js'
import type { LevelStore } from './level-store.js'

/**
 * Batches being written at once. LevelDB groups concurrent writers into one log write, so several
 * in flight go at disk speed where one awaited at a time does not (FIELD-NOTES: ~80-135 against
 * ~320 MB/s). Memory: this many batches.
 */
const BATCHES_IN_FLIGHT = 4

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
 * Chunks a byte stream into the store and records it as an `available` image, as a chain of stages:
 * read -> chunk (and hash the whole image, once) -> hash each chunk -> batch -> store
 * (several batches in flight). Memory is bounded by the batches in flight and the manifest's chunk
 * list (36 bytes a chunk), not by the image. The manifest, the image record and the last batch's index
 * entries land in one atomic, durable write, so an interrupted import leaves no image, only chunks no
 * image names, for the next `gc` (and for the retry, which finds them already stored).
 */
export async function ingest (store: LevelStore, source: AsyncIterable<Uint8Array>, options: IngestOptions): Promise<IngestResult> {
  return await store.lock.read(async () => {
    const params = options.chunker ?? DEFAULT_CHUNKER
    const whole = createHash('sha256')
    const builder = new ManifestBuilder()
    const counts = { newChunks: 0, newBytes: 0 }
    const writer = new BatchWriter(store, counts, options)
    let last: VerifiedChunk[] = []
    try {
      await pipe(
        source,
        chunkStage(new Chunker(params), whole, options),
        hashStage,
        batchStage(store.writeBatchBytes),
        async (batches: AsyncIterable<VerifiedChunk[]>) => {
          let pending: VerifiedChunk[] | undefined
          for await (const batch of batches) {
            for (const c of batch) builder.add(c.digest, c.bytes.length)
            // The last batch is held back: it goes in the commit's own write.
            if (pending != null) await writer.write(pending)
            pending = batch
          }
          last = pending ?? []
        }
      )
      await writer.drain()
    } finally {
      await writer.settled()
    }
    const digest = whole.digest()
    if (options.expectRef != null && `sha256:${digest.toString('hex')}` !== options.expectRef) {
      throw new DigestMismatchError(`image hashes to sha256:${digest.toString('hex')}, expected ${options.expectRef}`)
    }
    await writer.onlyNew(last) // counted here; commitImage stores them (waiting for any that another writer is storing)
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
    return { record, newChunks: counts.newChunks, newBytes: counts.newBytes }
  })
}

/** read -> chunks: cuts the stream into chunks and feeds the whole-image hash on the way. */
function chunkStage (chunker: Chunker, whole: Hash, options: IngestOptions) {
  return async function * (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    let consumed = 0
    for await (const piece of source) {
      options.signal?.throwIfAborted()
      whole.update(piece)
      yield * chunker.push(piece)
      consumed += piece.length
      options.onProgress?.(consumed)
    }
    yield * chunker.finish()
  }
}

/**
 * chunks -> verified chunks, hashed on the main thread. WebCrypto's digest (on the thread pool) copies
 * each chunk in and schedules a job: for 64 KiB chunks with SHA-NI that saved 20-40% of the hashing's
 * main-thread time but cost 40-130% more CPU (bench/hash-offload.ts, docs/benchmarks.md), and an
 * import's main thread is idle about half the time, waiting on LevelDB: no gain on a 2-core node.
 */
async function * hashStage (source: AsyncIterable<Uint8Array>): AsyncGenerator<VerifiedChunk> {
  for await (const bytes of source) yield chunkOf(bytes)
}

/** verified chunks -> batches of about `size` bytes (the store's write batch). */
function batchStage (size: number) {
  return async function * (source: AsyncIterable<VerifiedChunk>): AsyncGenerator<VerifiedChunk[]> {
    let batch: VerifiedChunk[] = []
    let bytes = 0
    for await (const c of source) {
      batch.push(c)
      bytes += c.bytes.length
      if (bytes >= size) {
        yield batch
        batch = []
        bytes = 0
      }
    }
    if (batch.length > 0) yield batch
  }
}

/** Writes batches with up to BATCHES_IN_FLIGHT at once; the first failure is thrown by the next call. */
class BatchWriter {
  private readonly inFlight = new Set<Promise<void>>()
  private failed: unknown
  constructor (private readonly store: LevelStore, private readonly counts: { newChunks: number, newBytes: number }, private readonly options: AbortOptions) {}

  /** Counts the chunks not stored yet as new (for the last batch, once nothing else of this import is in flight). */
  async onlyNew (chunks: VerifiedChunk[]): Promise<VerifiedChunk[]> {
    const present = await this.store.hasMany(chunks.map(c => c.digest), this.options)
    const seen = new Set<string>()
    const fresh = chunks.filter((c, i) => {
      const k = Buffer.from(c.digest).toString('latin1')
      if (present[i] || seen.has(k)) return false
      seen.add(k)
      return true
    })
    this.counts.newChunks += fresh.length
    for (const c of fresh) this.counts.newBytes += c.bytes.length
    return fresh
  }

  async write (batch: VerifiedChunk[]): Promise<void> {
    if (this.failed !== undefined) throw this.failed
    while (this.inFlight.size >= BATCHES_IN_FLIGHT) await Promise.race(this.inFlight)
    if (this.failed !== undefined) throw this.failed
    const writing = this.store.chunkLog.putNew(batch, this.options).then(n => {
      this.counts.newChunks += n.chunks
      this.counts.newBytes += n.bytes
    }, err => { this.failed ??= err })
    this.inFlight.add(writing)
    void writing.finally(() => this.inFlight.delete(writing))
  }

  /** Waits for every write; throws the first failure. */
  async drain (): Promise<void> {
    await this.settled()
    if (this.failed !== undefined) throw this.failed
  }

  /** Waits for every write, whatever their outcome. */
  async settled (): Promise<void> {
    await Promise.all(this.inFlight)
  }
}
