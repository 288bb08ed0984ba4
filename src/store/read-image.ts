import { createHash } from 'node:crypto'
import type { VerifiedChunk } from '../chunks/cid.js'
import { chunkEntries, type ChunkEntry, type Manifest } from '../chunks/manifest.js'
import { DigestMismatchError } from '../errors.js'
import type { AbortOptions } from './chunk-store.js'
import type { ChunkStore } from './chunk-store.js'

/** Chunks read from the store per request; two windows are in flight so reads overlap with the consumer. */
const WINDOW_CHUNKS = 32

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
  const fetch = async (w: ChunkEntry[]): Promise<VerifiedChunk[]> => await store.getMany(w.map(e => e.digest), options)
  const it = windows(chunkEntries(manifest))
  let cur = it.next()
  let pending = cur.done === true ? undefined : fetch(cur.value)
  while (cur.done !== true) {
    const entries = cur.value
    const chunks = await pending!
    cur = it.next()
    pending = cur.done === true ? undefined : fetch(cur.value)
    pending?.catch(() => {}) // observed when awaited on the next turn
    yield chunks.map((c, j) => {
      whole.update(c.bytes)
      return { ...c, offset: entries[j].offset, index: entries[j].index }
    })
  }
  const actual = whole.digest()
  if (!actual.equals(manifest.digest)) {
    throw new DigestMismatchError(`image assembled from its chunks hashes to sha256:${actual.toString('hex')}, not sha256:${Buffer.from(manifest.digest).toString('hex')}`)
  }
}

function * windows (entries: Iterable<ChunkEntry>): Generator<ChunkEntry[]> {
  let w: ChunkEntry[] = []
  for (const e of entries) {
    w.push(e)
    if (w.length === WINDOW_CHUNKS) { yield w; w = [] }
  }
  if (w.length > 0) yield w
}
