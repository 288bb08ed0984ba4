import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { MAX_CHUNK_SIZE } from '../chunks/fastcdc.js'
import { MAX_MANIFEST_BYTES } from '../chunks/manifest.js'
import { BundleInvalidError } from '../errors.js'

/**
 * The largest CAR section (CID and block) accepted: the largest manifest or chunk, plus room for the
 * CID. Checked on the length prefix, before anything is buffered, since a bundle is untrusted input.
 */
export const MAX_SECTION_BYTES = Math.max(MAX_MANIFEST_BYTES, MAX_CHUNK_SIZE) + 1024
/** The largest chunk section: a chunk is at most MAX_CHUNK_SIZE, far below a manifest's bound. */
export const MAX_CHUNK_SECTION_BYTES = MAX_CHUNK_SIZE + 1024
/** The largest CAR header: about 27,000 roots, far more than a bundle of images needs. */
export const MAX_HEADER_BYTES = 1024 * 1024

export interface CarBlock {
  cid: CID
  bytes: Uint8Array
}

/**
 * A CARv1 reader over a byte stream that holds at most one section plus one read of input in memory.
 * `@ipld/car`'s own iterators trust the length prefixes and would buffer whatever a hostile file
 * claims; this one checks every length against a bound first, and says where a file is cut short.
 */
export class CarReader {
  readonly roots: CID[]
  private readonly input: ByteQueue

  private constructor (input: ByteQueue, roots: CID[]) {
    this.input = input
    this.roots = roots
  }

  /** Reads the header. The source is read lazily from then on, one section per {@link next}. */
  static async open (source: AsyncIterable<Uint8Array>): Promise<CarReader> {
    const input = new ByteQueue(source)
    try {
      const length = await input.varint(MAX_HEADER_BYTES, 'header length')
      if (length === undefined) throw new BundleInvalidError('the bundle is empty')
      const bytes = await input.exactly(length, 'header')
      let header: any
      try {
        header = dagCbor.decode(bytes)
      } catch (err) {
        throw new BundleInvalidError(`the bundle's CAR header is not valid dag-cbor: ${(err as Error).message}`, { cause: err })
      }
      if (header?.version === 2) throw new BundleInvalidError('the bundle is a CARv2 file; imgswarm bundles are CARv1')
      if (header?.version !== 1 || !Array.isArray(header.roots)) throw new BundleInvalidError('the file is not a CARv1 bundle (no version 1 header with roots)')
      const roots: CID[] = []
      for (const r of header.roots) {
        const cid = CID.asCID(r)
        if (cid == null) throw new BundleInvalidError('the bundle\'s CAR header lists a root that is not a CID')
        roots.push(cid)
      }
      return new CarReader(input, roots)
    } catch (err) {
      await input.close()
      throw err
    }
  }

  /** Bytes consumed from the source so far. */
  get bytesRead (): number { return this.input.consumed }

  /** The next block, or undefined at a clean end of the file. A longer section than `max` is refused unread. */
  async next (max = MAX_SECTION_BYTES): Promise<CarBlock | undefined> {
    const length = await this.input.varint(max, 'block length')
    if (length === undefined) return undefined
    if (length === 0) throw new BundleInvalidError(`the bundle has an empty section at byte ${this.input.consumed}`)
    const section = await this.input.exactly(length, 'block')
    let cid: CID
    let bytes: Uint8Array
    try {
      [cid, bytes] = CID.decodeFirst(section)
    } catch (err) {
      throw new BundleInvalidError(`the bundle has a block whose CID cannot be read (before byte ${this.input.consumed}): ${(err as Error).message}`, { cause: err })
    }
    return { cid, bytes }
  }

  /** Stops reading the source (closes a file that was not read to the end). */
  async close (): Promise<void> {
    await this.input.close()
  }
}

/** Bytes from an async source, buffered only as far as a read asks. */
class ByteQueue {
  consumed = 0
  private readonly it: AsyncIterator<Uint8Array>
  private pieces: Uint8Array[] = []
  private head = 0
  private buffered = 0
  private ended = false

  constructor (source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]()
  }

  /** Buffers until `n` bytes are available or the source ends; whether `n` are available. */
  private async fill (n: number): Promise<boolean> {
    while (this.buffered < n && !this.ended) {
      const r = await this.it.next()
      if (r.done === true) {
        this.ended = true
      } else if (r.value.length > 0) {
        this.pieces.push(r.value)
        this.buffered += r.value.length
      }
    }
    return this.buffered >= n
  }

  private byteAt (i: number): number {
    let k = 0
    let at = this.head + i
    while (at >= this.pieces[k].length) {
      at -= this.pieces[k].length
      k++
    }
    return this.pieces[k][at]
  }

  /** Takes `n` buffered bytes; copies only when they span more than one piece of input. */
  private take (n: number): Uint8Array {
    // A zero-length header may end the input, and then no piece is buffered at all.
    if (n === 0) return new Uint8Array(0)
    const first = this.pieces[0]
    let out: Uint8Array
    if (first.length - this.head >= n) {
      out = first.subarray(this.head, this.head + n)
      this.head += n
    } else {
      out = new Uint8Array(n)
      let filled = 0
      while (filled < n) {
        const p = this.pieces[0]
        const part = Math.min(n - filled, p.length - this.head)
        out.set(p.subarray(this.head, this.head + part), filled)
        filled += part
        this.head += part
        if (this.head === p.length) {
          this.pieces.shift()
          this.head = 0
        }
      }
    }
    if (this.pieces.length > 0 && this.head === this.pieces[0].length) {
      this.pieces.shift()
      this.head = 0
    }
    this.buffered -= n
    this.consumed += n
    return out
  }

  /** An unsigned LEB128 varint of at most `max`, or undefined when the source ends cleanly before it. */
  async varint (max: number, what: string): Promise<number | undefined> {
    let value = 0
    // Eight bytes hold 56 bits, more than any bound used here; a longer varint is malformed.
    for (let i = 0; i < 8; i++) {
      if (!await this.fill(i + 1)) {
        if (i === 0) return undefined
        throw new BundleInvalidError(`the bundle ends in the middle of a ${what} at byte ${this.consumed}`)
      }
      const b = this.byteAt(i)
      value += (b & 0x7f) * 2 ** (7 * i)
      if ((b & 0x80) === 0) {
        if (value > max) throw new BundleInvalidError(`the bundle has a ${what} of ${value} bytes at byte ${this.consumed}, over the limit of ${max}`)
        this.take(i + 1)
        return value
      }
    }
    throw new BundleInvalidError(`the bundle has a malformed ${what} at byte ${this.consumed}`)
  }

  async exactly (n: number, what: string): Promise<Uint8Array> {
    if (!await this.fill(n)) throw new BundleInvalidError(`the bundle is cut short: it ends in a ${what} at byte ${this.consumed + this.buffered}, ${n - this.buffered} bytes short`)
    return this.take(n)
  }

  async close (): Promise<void> {
    this.pieces = []
    this.buffered = 0
    await this.it.return?.()
  }
}
