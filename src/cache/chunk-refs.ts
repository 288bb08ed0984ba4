import type { Manifest } from '../chunks/manifest.js'

/** Why an image may not be evicted, as bits: chunk entries carry the union of their images' reasons. */
export const PINNED = 1
export const LEASED = 2
/** Being fetched, read or served, or used within the eviction grace (replicas count as PINNED). */
export const BUSY = 4

/** Words a slot takes: three of the digest (96 bits: a collision needs ~2^48 chunks), length, refs. */
const SLOT = 5
const EMPTY = 0 // in the length word: chunks are never empty

/**
 * Every chunk that stored images name, once, with its length, how many evictable images name it and
 * why protected images that name it are protected: enough to tell what evicting an image would free
 * without reading a chunk. An open-addressing table in one Uint32Array (linear probing, kept at most
 * half full): 20 bytes a slot, 40–80 bytes a distinct chunk while an eviction pass runs (a Map of
 * digest strings took ~110; `npm run bench:eviction`).
 */
export class ChunkRefs {
  private table = new Uint32Array(SLOT * 1024)
  private used = 0
  /** Bytes of all distinct chunks named. */
  total = 0

  /** Memory the table takes, in bytes. */
  get byteLength (): number {
    return this.table.byteLength
  }

  /** Adds an image's chunks; `protect` (a mask of PINNED, LEASED, BUSY) 0 for an evictable image. */
  add (manifest: Manifest, protect: number): void {
    const n = manifest.chunkDigests.length / 32
    const lengths = lengthsOf(manifest)
    for (let i = 0; i < n; i++) {
      const s = this.slotOf(manifest.chunkDigests, i, true)
      const t = this.table
      if (t[s + 3] === EMPTY) {
        t[s + 3] = lengths.getUint32(i * 4)
        this.total += t[s + 3]
      }
      const refs = t[s + 4]
      t[s + 4] = ((refs >>> 3) + (protect === 0 ? 1 : 0)) << 3 | (refs & 7) | protect
    }
  }

  /** Bytes of the manifest's chunks that no image added so far names (what fetching it would add). */
  newBytes (manifest: Manifest): number {
    const seen = new ChunkRefs()
    const n = manifest.chunkDigests.length / 32
    const lengths = lengthsOf(manifest)
    let bytes = 0
    for (let i = 0; i < n; i++) {
      if (this.slotOf(manifest.chunkDigests, i, false) >= 0) continue
      const s = seen.slotOf(manifest.chunkDigests, i, true)
      if (seen.table[s + 3] !== EMPTY) continue
      seen.table[s + 3] = lengths.getUint32(i * 4)
      bytes += seen.table[s + 3]
    }
    return bytes
  }

  /** Removes an evictable image's references and returns the bytes that no image names any more. */
  remove (manifest: Manifest): number {
    let freed = 0
    const n = manifest.chunkDigests.length / 32
    for (let i = 0; i < n; i++) {
      const s = this.slotOf(manifest.chunkDigests, i, false)
      if (s < 0) continue // named twice by this image: already gone
      const t = this.table
      const refs = t[s + 4]
      const evictable = refs >>> 3
      if (evictable <= 1 && (refs & 7) === 0) {
        this.total -= t[s + 3]
        freed += t[s + 3]
        this.delete(s)
      } else {
        t[s + 4] = Math.max(0, evictable - 1) << 3 | (refs & 7)
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
    const t = this.table
    for (let s = 0; s < t.length; s += SLOT) {
      if (t[s + 3] === EMPTY) continue
      const m = t[s + 4] & 7
      if (mask === 0 ? m === 0 : (m & mask) !== 0) bytes += t[s + 3]
    }
    return bytes
  }

  /** The slot of chunk `i` of `digests`: found, or (with `insert`) made empty for it; else -1. */
  private slotOf (digests: Uint8Array, i: number, insert: boolean): number {
    if (insert && (this.used + 1) * 2 > this.table.length / SLOT) this.grow()
    const v = new DataView(digests.buffer, digests.byteOffset + i * 32, 12)
    const k0 = v.getUint32(0)
    const k1 = v.getUint32(4)
    const k2 = v.getUint32(8)
    const t = this.table
    const slots = t.length / SLOT
    for (let j = k0 & (slots - 1); ; j = (j + 1) & (slots - 1)) {
      const s = j * SLOT
      if (t[s + 3] === EMPTY) {
        if (!insert) return -1
        t[s] = k0
        t[s + 1] = k1
        t[s + 2] = k2
        this.used++
        return s
      }
      if (t[s] === k0 && t[s + 1] === k1 && t[s + 2] === k2) return s
    }
  }

  /** Empties slot `s`, moving later entries of its probe run back so that every lookup still finds them. */
  private delete (s: number): void {
    const t = this.table
    const slots = t.length / SLOT
    let hole = s / SLOT
    for (let j = (hole + 1) & (slots - 1); t[j * SLOT + 3] !== EMPTY; j = (j + 1) & (slots - 1)) {
      const home = t[j * SLOT] & (slots - 1)
      // An entry whose home lies cyclically in (hole, j] is where a lookup finds it; others move back.
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j
      if (stays) continue
      t.copyWithin(hole * SLOT, j * SLOT, j * SLOT + SLOT)
      hole = j
    }
    t.fill(0, hole * SLOT, hole * SLOT + SLOT)
    this.used--
  }

  private grow (): void {
    const old = this.table
    this.table = new Uint32Array(old.length * 2)
    const slots = this.table.length / SLOT
    for (let s = 0; s < old.length; s += SLOT) {
      if (old[s + 3] === EMPTY) continue
      let j = old[s] & (slots - 1)
      while (this.table[j * SLOT + 3] !== EMPTY) j = (j + 1) & (slots - 1)
      this.table.set(old.subarray(s, s + SLOT), j * SLOT)
    }
  }
}

function lengthsOf (m: Manifest): DataView {
  return new DataView(m.chunkLengths.buffer, m.chunkLengths.byteOffset, m.chunkLengths.byteLength)
}
