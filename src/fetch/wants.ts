import { chunkEntries, type Manifest } from '../chunks/manifest.js'
import type { ChunkStore } from '../store/chunk-store.js'

/** A distinct chunk the node still needs, with every place it occupies in the image. */
export interface Want {
  digest: Uint8Array
  /** The digest as a map key. */
  key: string
  length: number
  /** Offset of its first occurrence, for origin range reads. */
  offset: number
  /** Every chunk index with this digest (a run of zeros repeats one chunk many times). */
  indices: number[]
}

export function keyOf (digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')
}

/**
 * The distinct chunks of an image that the store lacks, in image order, and how many bytes of the
 * image are already present (counted once per occurrence, as a reader would see them).
 */
export async function missingChunks (store: ChunkStore, manifest: Manifest): Promise<{ wants: Want[], presentBytes: number }> {
  const byKey = new Map<string, Want>()
  const order: Want[] = []
  for (const e of chunkEntries(manifest)) {
    const key = keyOf(e.digest)
    const w = byKey.get(key)
    if (w != null) { w.indices.push(e.index); continue }
    const want: Want = { digest: e.digest, key, length: e.length, offset: e.offset, indices: [e.index] }
    byKey.set(key, want)
    order.push(want)
  }
  const wants: Want[] = []
  let presentBytes = 0
  for (let i = 0; i < order.length; i += 1024) {
    const slice = order.slice(i, i + 1024)
    const present = await store.hasMany(slice.map(w => w.digest))
    slice.forEach((w, j) => {
      if (present[j]) presentBytes += w.length * w.indices.length
      else wants.push(w)
    })
  }
  return { wants, presentBytes }
}
