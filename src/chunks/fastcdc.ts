import { GEAR } from './gear.js'

/** Chunk size bounds of the content-defined chunker, in bytes. They are recorded in every manifest. */
export interface ChunkerParams {
  /** No chunk (but an image's last) is shorter. */
  min: number
  /** The target average; a power of two. */
  avg: number
  /** No chunk is longer. */
  max: number
}

/** Name of the cut-point algorithm, recorded in manifests: FastCDC with normalisation level 2 over GEAR. */
export const CHUNKER_ALGORITHM = 'fastcdc-gear32-nc2'

/**
 * Defaults chosen by measurement (docs/benchmarks.md, `npm run bench:chunking`): 64 KiB chunks share
 * far more of two versions of a qcow2 image than 256 KiB ones, at a chunking cost that stays well
 * above storage speed.
 */
export const DEFAULT_CHUNKER: Readonly<ChunkerParams> = Object.freeze({ min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 })

/** The largest chunk any manifest may declare; bounds every buffer that holds one chunk. */
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024

export function validateChunkerParams (p: ChunkerParams): void {
  const ok = Number.isSafeInteger(p.min) && Number.isSafeInteger(p.avg) && Number.isSafeInteger(p.max) &&
    p.min >= 64 && p.min <= p.avg && p.avg <= p.max && p.max <= MAX_CHUNK_SIZE &&
    (p.avg & (p.avg - 1)) === 0
  if (!ok) {
    throw new RangeError(`invalid chunker parameters min=${p.min} avg=${p.avg} max=${p.max}: need 64 <= min <= avg <= max <= ${MAX_CHUNK_SIZE} and avg a power of two`)
  }
}

/** A mask of the `bits` most significant bits: those mix the last 32 input bytes, the low bits fewer. */
function topBitsMask (bits: number): number {
  return bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1)
}

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
export class Chunker {
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
