import { createHash } from 'node:crypto'
import type { VerifiedChunk } from '../chunks/cid.js'
import { chunkEntries, type ChunkEntry, type Manifest } from '../chunks/manifest.js'
import { DigestMismatchError } from '../errors.js'
import type { AbortOptions } from './chunk-store.js'
import type { ChunkStore } from './chunk-store.js'

/**
 * A read request asks for up to this many chunks or bytes (at least one chunk), whichever comes
 * first; the byte bound keeps memory independent of the chunker's sizes.
 */
const WINDOW_CHUNKS = 32
const WINDOW_BYTES = 2 * 1024 * 1024
/**
 * Requests in flight ahead of the window being consumed: they overlap LevelDB reads (on libuv's
 * threads) with the consumer's hashing and writing. Measured with `npm run bench:import`
 * (docs/benchmarks.md): going from 1 to 2 helps, more does not. Memory: (1 + READ_AHEAD) windows.
 */
const READ_AHEAD = 2

export interface PlacedChunk extends VerifiedChunk {
  offset: number
  index: number
}

/**
 * The chunks of an image in order, each verified against its digest, read ahead in windows. After the
 * last chunk the whole-image sha256 is compared with the manifest's digest; a mismatch throws instead
 * of ending, so a consumer that reaches the end has the exact image.
 */
export async function * readImage (store: ChunkStore, manifest: Manifest, options?: AbortOptions): AsyncGenerator<PlacedChunk[]> {
  const whole = createHash('sha256')
  const it = readWindows(chunkEntries(manifest))
  const queue: Array<{ entries: ChunkEntry[], chunks: Promise<VerifiedChunk[]> }> = []
  const refill = (): void => {
    while (queue.length <= READ_AHEAD) {
      const next = it.next()
      if (next.done === true) return
      const chunks = store.getMany(next.value.map(e => e.digest), options)
      chunks.catch(() => {}) // observed when its turn comes
      queue.push({ entries: next.value, chunks })
    }
  }
  refill()
  while (queue.length > 0) {
    const { entries, chunks } = queue.shift()!
    const got = await chunks
    refill()
    yield got.map((c, j) => {
      whole.update(c.bytes)
      return { ...c, offset: entries[j].offset, index: entries[j].index }
    })
  }
  const actual = whole.digest()
  if (!actual.equals(manifest.digest)) {
    throw new DigestMismatchError(`image assembled from its chunks hashes to sha256:${actual.toString('hex')}, not sha256:${Buffer.from(manifest.digest).toString('hex')}`)
  }
}

/** Chunk entries grouped into read windows (see WINDOW_CHUNKS and WINDOW_BYTES). */
export function * readWindows (entries: Iterable<ChunkEntry>): Generator<ChunkEntry[]> {
  let w: ChunkEntry[] = []
  let bytes = 0
  for (const e of entries) {
    if (w.length > 0 && (w.length === WINDOW_CHUNKS || bytes + e.length > WINDOW_BYTES)) {
      yield w
      w = []
      bytes = 0
    }
    w.push(e)
    bytes += e.length
  }
  if (w.length > 0) yield w
}
