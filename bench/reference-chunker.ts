import { GEAR } from '../src/chunks/gear.js'
import { validateChunkerParams, DEFAULT_CHUNKER, type ChunkerParams } from '../src/chunks/fastcdc.js'

/** A mask of the `bits` most significant bits. */
function topBitsMask (bits: number): number {
  return bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1)
}

// The original one-byte-per-iteration chunker, kept verbatim as the reference that the fast one in
// src/chunks/fastcdc.ts must agree with, cut for cut (bench/chunking.ts checks it on every run).
/**
 * Streaming FastCDC (Xia et al., 2016/2020): a gear rolling hash, cut-point skipping below `min`, and
 * normalised chunking (a stricter mask before `avg`, a looser one after) so that chunk sizes cluster
 * around `avg`. Push bytes in any pieces; the chunks depend only on the content, never on how it was
 * split into pieces.
 *
 * @example
 * const chunker = new Chunker()
 * for await (const piece of stream) for (const chunk of chunker.push(piece)) store(chunk)
 * for (const chunk of chunker.finish()) store(chunk)
 */
export class ReferenceChunker {
  readonly params: Readonly<ChunkerParams>
  private readonly maskS: number
  private readonly maskL: number
  /** Pieces of the chunk being built, not yet emitted. */
  private parts: Uint8Array[] = []
  /** Bytes in the chunk being built. */
  private pos = 0
  private hash = 0

  constructor (params: ChunkerParams = DEFAULT_CHUNKER) {
    validateChunkerParams(params)
    this.params = Object.freeze({ ...params })
    const bits = Math.log2(params.avg)
    this.maskS = topBitsMask(bits + 2)
    this.maskL = topBitsMask(bits - 2)
  }

  /** Feeds bytes; returns the chunks that are complete. Returned chunks may share memory with `data`. */
  push (data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    const { min, avg, max } = this.params
    let o = 0
    while (o < data.length) {
      if (this.pos < min) {
        // Cut-point skipping: no boundary can fall before `min`, so these bytes are not hashed.
        const take = Math.min(min - this.pos, data.length - o)
        this.parts.push(data.subarray(o, o + take))
        this.pos += take
        o += take
        if (this.pos === max) out.push(this.emit())
        continue
      }
      const cut = this.scan(data, o, avg, max)
      if (cut < 0) {
        this.parts.push(data.subarray(o))
        break
      }
      this.parts.push(data.subarray(o, cut))
      out.push(this.emit())
      o = cut
    }
    return out
  }

  /** Ends the input; returns the last, possibly short, chunk (or nothing for empty input). */
  finish (): Uint8Array[] {
    return this.pos > 0 ? [this.emit()] : []
  }

  /**
   * Rolls the hash over data[from…] for the chunk being built. Returns the index just past the cut
   * point, or -1 when the data ends first (the state is kept for the next piece).
   */
  private scan (data: Uint8Array, from: number, avg: number, max: number): number {
    let h = this.hash
    let pos = this.pos
    let i = from
    const n = data.length
    const gear = GEAR
    // Before the average size the strict mask makes a cut less likely; after it the loose one more likely.
    const normalEnd = Math.min(n, i + Math.max(0, avg - pos))
    const maskS = this.maskS
    for (; i < normalEnd; i++) {
      h = ((h << 1) + gear[data[i]]) | 0
      if ((h & maskS) === 0) { this.pos = pos + (i + 1 - from); return i + 1 }
    }
    pos += normalEnd - from
    const hardEnd = Math.min(n, i + (max - pos))
    const maskL = this.maskL
    const start = i
    for (; i < hardEnd; i++) {
      h = ((h << 1) + gear[data[i]]) | 0
      if ((h & maskL) === 0) { this.pos = pos + (i + 1 - start); return i + 1 }
    }
    pos += hardEnd - start
    this.pos = pos
    this.hash = h
    return pos === max ? i : -1
  }

  private emit (): Uint8Array {
    const parts = this.parts
    const chunk = parts.length === 1 ? parts[0] : Buffer.concat(parts, this.pos)
    this.parts = []
    this.pos = 0
    this.hash = 0
    return chunk
  }
}
