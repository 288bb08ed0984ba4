/**
 * A fixed-size set of chunk indices, one bit each, most significant bit first: index `i` is bit
 * `0x80 >> (i % 8)` of byte `i >> 3`, as in BitTorrent's bitfield. Bits past `size` are zero.
 */
export class Bitfield {
  /** Number of indices (chunks in the manifest). */
  readonly size: number
  /** The packed bits, `ceil(size / 8)` bytes. */
  readonly bytes: Uint8Array

  constructor (size: number, bytes?: Uint8Array) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid bitfield size ${size}`)
    const n = Bitfield.byteLength(size)
    if (bytes != null && bytes.length !== n) throw new RangeError(`a bitfield of ${size} bits has ${n} bytes, not ${bytes.length}`)
    this.size = size
    this.bytes = bytes ?? new Uint8Array(n)
  }

  static byteLength (size: number): number {
    return Math.ceil(size / 8)
  }

  /** A bitfield with the indices where `present[i]` is true. */
  static from (present: ArrayLike<boolean>): Bitfield {
    const b = new Bitfield(present.length)
    for (let i = 0; i < present.length; i++) if (present[i]) b.set(i)
    return b
  }

  has (i: number): boolean {
    return i >= 0 && i < this.size && (this.bytes[i >> 3] & (0x80 >> (i & 7))) !== 0
  }

  set (i: number, value = true): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new RangeError(`index ${i} outside a bitfield of ${this.size}`)
    if (value) this.bytes[i >> 3] |= 0x80 >> (i & 7)
    else this.bytes[i >> 3] &= ~(0x80 >> (i & 7))
  }

  /** How many indices are set. */
  count (): number {
    let n = 0
    for (const byte of this.bytes) {
      let b = byte
      while (b !== 0) { b &= b - 1; n++ }
    }
    return n
  }

  /** Whether the bits past `size` in the last byte are all zero, as a well-formed bitfield has them. */
  hasCleanTail (): boolean {
    const spare = this.bytes.length * 8 - this.size
    return spare === 0 || (this.bytes[this.bytes.length - 1] & ((1 << spare) - 1)) === 0
  }
}
