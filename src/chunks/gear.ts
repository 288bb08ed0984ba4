import { createHash } from 'node:crypto'

/**
 * The gear table of the content-defined chunker: 256 pseudo-random 32-bit words. It is part of the
 * on-disk and wire format (chunk boundaries depend on it), so it is derived from a fixed recipe rather
 * than a random source: word i is the first 4 bytes (big-endian) of sha256("imgswarm-gear-v1:" + i).
 */
export const GEAR: Int32Array = (() => {
  const table = new Int32Array(256)
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(`imgswarm-gear-v1:${i}`).digest().readInt32BE(0)
  }
  return table
})()
