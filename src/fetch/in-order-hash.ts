import { createHash, type Hash } from 'node:crypto'
import { chunkCount, type Manifest } from '../chunks/manifest.js'
import type { ChunkStore } from '../store/chunk-store.js'
import { AheadBuffer } from './ahead-buffer.js'

/**
 * Chunks that arrived ahead of the hash's position are kept up to this many bytes (the nearest); others
 * are read back when the hash gets to them. 16 MiB covers the batches in flight from one peer (4 × 4 MiB).
 */
const AHEAD_BYTES = 16 * 1024 * 1024
/** Chunks read from the store per request, when the hash must read them. */
const READ_WINDOW = 32

/**
 * The whole-image sha256 of an image being fetched, computed once, in image order, from the chunks
 * as they are verified on arrival: no second pass that reads every chunk back and hashes it again.
 * Chunks that were stored before the fetch, or that arrived too far ahead of the hash (more than
 * AHEAD_BYTES), are read from the store when the hash gets to them.
 */
export class InOrderHash {
  private readonly hash: Hash = createHash('sha256')
  private readonly n: number
  private next = 0
  private readonly ahead = new AheadBuffer(AHEAD_BYTES)
  private pumping: Promise<void> = Promise.resolve()
  private running = false

  /** `stored(i)`: chunk i was in the store before the fetch, so it will not arrive. */
  constructor (private readonly store: ChunkStore, private readonly manifest: Manifest, private readonly stored: (i: number) => boolean) {
    this.n = chunkCount(manifest)
  }

  /** A verified chunk, at every index it stands at in the image. */
  add (indices: number[], bytes: Uint8Array): void {
    for (const i of indices) this.ahead.offer(i, bytes, this.next)
    this.pump()
  }

  /** The digest, once every chunk has been hashed (reading from the store what did not come by). */
  async digest (): Promise<Buffer> {
    this.pump()
    await this.pumping
    while (this.next < this.n) await this.readStored(Math.min(READ_WINDOW, this.n - this.next))
    return this.hash.digest()
  }

  private digestAt (i: number): Uint8Array {
    return this.manifest.chunkDigests.subarray(i * 32, i * 32 + 32)
  }

  /** Moves the hash on through the chunks held ahead, and through runs stored before the fetch. */
  private pump (): void {
    if (this.running) return
    this.running = true
    const run = async (): Promise<void> => {
      try {
        while (this.next < this.n) {
          const held = this.ahead.take(this.next)
          if (held != null) {
            this.hash.update(held)
            this.next++
          } else if (this.stored(this.next)) {
            let count = 1
            while (count < READ_WINDOW && this.next + count < this.n && this.stored(this.next + count) && !this.ahead.has(this.next + count)) count++
            await this.readStored(count)
          } else {
            break
          }
        }
      } finally {
        // Cleared here, not by whoever awaits: without an await above, this runs before run() returns.
        this.running = false
      }
    }
    this.pumping = run()
    this.pumping.catch(() => {}) // a failed read is read again, and reported, by digest()
  }

  private async readStored (count: number): Promise<void> {
    const digests: Uint8Array[] = []
    for (let i = this.next; i < this.next + count; i++) digests.push(this.digestAt(i))
    for (const c of await this.store.getMany(digests)) {
      this.ahead.take(this.next)
      this.hash.update(c.bytes)
      this.next++
    }
  }
}
