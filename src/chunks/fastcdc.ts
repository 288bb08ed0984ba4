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
    const n = data.length
    let pos = this.pos
    // Before the average size the strict mask makes a cut less likely; after it the loose one more likely.
    const normalEnd = Math.min(n, from + Math.max(0, avg - pos))
    let cut = roll(data, from, normalEnd, this.hash, this.maskS)
    if (cut >= 0) { this.pos = pos + (cut - from); return cut }
    pos += normalEnd - from
    const hardEnd = Math.min(n, normalEnd + (max - pos))
    cut = roll(data, normalEnd, hardEnd, rolled, this.maskL)
    if (cut >= 0) { this.pos = pos + (cut - normalEnd); return cut }
    pos += hardEnd - normalEnd
    this.pos = pos
    this.hash = rolled
    return pos === max ? hardEnd : -1
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

/** The hash after the last {@link roll} that found no cut (a second return value, without an allocation). */
let rolled = 0

/** Whether a Uint32Array load puts the byte at the lowest address in the lowest 8 bits. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/**
 * The gear hash over data[from…end), starting from `h`: returns the index just past the first byte
 * after which `h & mask` is 0, or -1 (with the final hash in {@link rolled}). This is the chunker's hot
 * loop, and it gives exactly the cuts of the plain one-byte loop
 * `h = (h << 1) + GEAR[byte]; if ((h & mask) === 0) cut`, only faster: bytes are loaded four at a time
 * from 4-byte-aligned words and the loop is unrolled by eight (about 2-3× the plain loop in V8 here;
 * docs/benchmarks.md). The FastCDC 2020 "two bytes per iteration" trick is not used: with a mask of the
 * top bits it would test fewer bits at odd positions and so move the cut points.
 */
function roll (data: Uint8Array, from: number, end: number, h: number, mask: number): number {
  const gear = GEAR
  let i = from
  if (LITTLE_ENDIAN && end - i >= 64) {
    // Bytewise up to an 8-byte boundary of the underlying buffer, then whole words.
    const head = (8 - ((data.byteOffset + i) & 7)) & 7
    for (const stop = i + head; i < stop; i++) {
      h = ((h << 1) + gear[data[i]]) | 0
      if ((h & mask) === 0) return i + 1
    }
    const pairs = (end - i) >>> 3
    const words = new Uint32Array(data.buffer, data.byteOffset + i, pairs * 2)
    for (let j = 0; j < words.length; j += 2) {
      let w = words[j]
      h = ((h << 1) + gear[w & 255]) | 0
      if ((h & mask) === 0) return i + j * 4 + 1
      h = ((h << 1) + gear[(w >>> 8) & 255]) | 0
      if ((h & mask) === 0) return i + j * 4 + 2
      h = ((h << 1) + gear[(w >>> 16) & 255]) | 0
      if ((h & mask) === 0) return i + j * 4 + 3
      h = ((h << 1) + gear[w >>> 24]) | 0
      if ((h & mask) === 0) return i + j * 4 + 4
      w = words[j + 1]
      h = ((h << 1) + gear[w & 255]) | 0
      if ((h & mask) === 0) return i + j * 4 + 5
      h = ((h << 1) + gear[(w >>> 8) & 255]) | 0
      if ((h & mask) === 0) return i + j * 4 + 6
      h = ((h << 1) + gear[(w >>> 16) & 255]) | 0
      if ((h & mask) === 0) return i + j * 4 + 7
      h = ((h << 1) + gear[w >>> 24]) | 0
      if ((h & mask) === 0) return i + j * 4 + 8
    }
    i += pairs * 8
  }
  for (; i < end; i++) {
    h = ((h << 1) + gear[data[i]]) | 0
    if ((h & mask) === 0) return i + 1
  }
  rolled = h
  return -1
}
