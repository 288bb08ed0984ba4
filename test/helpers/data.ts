import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { open } from 'node:fs/promises'

/** Deterministic pseudo-random bytes (AES-128-CTR keyed by the seed), so failures reproduce. */
export function seededBytes (size: number, seed = 'imgswarm'): Buffer {
  const key = createHash('sha256').update(seed).digest()
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32))
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()])
}

/** Writes `size` random bytes to `path` in 1 MiB pieces (memory stays flat for large files). */
export async function writeRandomFile (path: string, size: number): Promise<string> {
  const fh = await open(path, 'w')
  const hash = createHash('sha256')
  try {
    for (let off = 0; off < size; off += 1 << 20) {
      const piece = randomBytes(Math.min(1 << 20, size - off))
      hash.update(piece)
      await fh.write(piece)
    }
  } finally {
    await fh.close()
  }
  return `sha256:${hash.digest('hex')}`
}

export function sha256Ref (bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** Bytes as the async stream that imports and origin writes take, in pieces of `piece` bytes. */
export async function * streamOf (bytes: Uint8Array, piece = 1 << 20): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < bytes.length; off += piece) yield bytes.subarray(off, off + piece)
}
