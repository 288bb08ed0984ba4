import type { Manifest } from '../chunks/manifest.js'

/** Largest chunk length the packed entries below can hold (16 MiB; FastCDC's maximum is 256 KiB). */
const LENGTH_LIMIT = 2 ** 24

/** Why an image may not be evicted, as bits: chunk entries carry the union of their images' reasons. */
export const PINNED = 1
export const LEASED = 2
/** Being fetched, read or served, or used within the eviction grace (replicas count as PINNED). */
export const BUSY = 4

/**
 * Every chunk that stored images name, once, with its length, how many evictable images name it and
 * why protected images that name it are protected: enough to tell what evicting an image would free without reading a
 * chunk. Chunks are keyed by the first 16 bytes of their digest (a collision needs ~2^64 chunks) and
 * an entry is one packed number; the table costs about 110 bytes a chunk (1.7 MiB per GiB stored,
 * measured by `npm run bench:eviction`)
 * while an eviction pass runs.
 */
export class ChunkRefs {
  private readonly entries = new Map<string, number>()
  /** Bytes of all distinct chunks named. */
  total = 0

  /** Adds an image's chunks; `protect` (a mask of PINNED, LEASED, BUSY) 0 for an evictable image. */
  add (manifest: Manifest, protect: number): void {
    const d = manifest.chunkDigests
    for (let i = 0; i < d.length / 32; i++) {
      const key = keyAt(d, i)
      const length = lengthAt(manifest, i)
      const old = this.entries.get(key)
      if (old === undefined) {
        this.total += length
        this.entries.set(key, pack(length, protect === 0 ? 1 : 0, protect))
      } else {
        const e = unpack(old)
        this.entries.set(key, pack(e.length, e.evictable + (protect === 0 ? 1 : 0), e.mask | protect))
      }
    }
  }

  /** Bytes of the manifest's chunks that no image added so far names (what fetching it would add). */
  newBytes (manifest: Manifest): number {
    let bytes = 0
    const seen = new Set<string>()
    const d = manifest.chunkDigests
    for (let i = 0; i < d.length / 32; i++) {
      const key = keyAt(d, i)
      if (this.entries.has(key) || seen.has(key)) continue
      seen.add(key)
      bytes += lengthAt(manifest, i)
    }
    return bytes
  }

  /** Removes an evictable image's references and returns the bytes that no image names any more. */
  remove (manifest: Manifest): number {
    let freed = 0
    const d = manifest.chunkDigests
    for (let i = 0; i < d.length / 32; i++) {
      const key = keyAt(d, i)
      const old = this.entries.get(key)
      if (old === undefined) continue // named twice by this image: already gone
      const e = unpack(old)
      if (e.evictable <= 1 && e.mask === 0) {
        this.entries.delete(key)
        this.total -= e.length
        freed += e.length
      } else {
        this.entries.set(key, pack(e.length, Math.max(0, e.evictable - 1), e.mask))
      }
    }
    return freed
  }

  /**
   * Bytes of chunks whose protection includes any bit of `mask`; with `mask` 0, the bytes that no
   * protected image names (what evicting every evictable image would free).
   */
  bytesWith (mask: number): number {
    let bytes = 0
    for (const v of this.entries.values()) {
      const e = unpack(v)
      if (mask === 0 ? e.mask === 0 : (e.mask & mask) !== 0) bytes += e.length
    }
    return bytes
  }
}

function lengthAt (m: Manifest, i: number): number {
  return new DataView(m.chunkLengths.buffer, m.chunkLengths.byteOffset + i * 4, 4).getUint32(0)
}

function keyAt (digests: Uint8Array, i: number): string {
  return Buffer.from(digests.buffer, digests.byteOffset + i * 32, 16).toString('latin1')
}

function pack (length: number, evictable: number, mask: number): number {
  if (length >= LENGTH_LIMIT) throw new RangeError(`chunk of ${length} bytes is over the ${LENGTH_LIMIT}-byte limit`)
  return (evictable * 8 + mask) * LENGTH_LIMIT + length
}

function unpack (v: number): { length: number, evictable: number, mask: number } {
  const length = v % LENGTH_LIMIT
  const rest = Math.floor(v / LENGTH_LIMIT)
  return { length, evictable: Math.floor(rest / 8), mask: rest % 8 }
}
