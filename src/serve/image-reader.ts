import { chunkCount, type Manifest } from '../chunks/manifest.js'
import { NoSourceError } from '../errors.js'
import type { FetchJob } from '../fetch/fetch-job.js'
import { hasBit } from '../fetch/sources.js'
import type { ChunkStore } from '../store/chunk-store.js'

/** Verified chunks kept for reads that come back to them (qemu reads 4 KiB-2 MiB pieces of ~64 KiB chunks). */
const CACHE_BYTES = 16 * 1024 * 1024
/** On sequential reads, chunks this far past the read are asked for too, without waiting for them. */
const READ_AHEAD_BYTES = 2 * 1024 * 1024
/** A read that has not got its chunks after this long fails (EIO for NBD); the fetch goes on. */
const READ_TIMEOUT_MS = 10 * 60_000

export interface ImageReaderOptions {
  store: ChunkStore
  manifest: Manifest
  /** The image's fetch while it runs: missing chunks are asked of it. */
  job?: FetchJob
  /** The manifest CID the caller named (an NBD export or API ref by CID): a manifest the caller trusts. */
  namedCid?: string
  /** The CID of `manifest`, as its record names it. */
  manifestCid: string
}

/**
 * Reads byte ranges of an image, stored or still arriving. A range whose chunks are stored is read
 * from the store (verified on read); one whose chunks are missing makes them the fetch's most urgent,
 * and returns as soon as they are verified, before they reach the disk. That happens only under a
 * trusted manifest: the origin's, one the origin confirms, or the CID the caller named. Under a
 * manifest only peers vouch for, a read waits for the whole-image check, since the chunks would
 * match a manifest that may not make the image asked for.
 */
export class ImageReader {
  readonly size: number
  private readonly offsets: Float64Array
  private readonly n: number
  private readonly cache = new Map<number, Uint8Array>()
  private cacheBytes = 0
  private trusted?: Promise<boolean>
  private lastEnd = -1

  constructor (private readonly o: ImageReaderOptions) {
    const m = o.manifest
    this.size = m.size
    this.n = chunkCount(m)
    this.offsets = new Float64Array(this.n + 1)
    const lengths = new DataView(m.chunkLengths.buffer, m.chunkLengths.byteOffset, m.chunkLengths.byteLength)
    for (let i = 0; i < this.n; i++) this.offsets[i + 1] = this.offsets[i] + lengths.getUint32(i * 4)
  }

  /** Exactly `length` bytes at `offset`; the caller keeps the range inside the image. */
  async read (offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length)
    if (length === 0) return out
    const first = this.chunkAt(offset)
    const last = this.chunkAt(offset + length - 1)
    const indices: number[] = []
    for (let i = first; i <= last; i++) indices.push(i)
    if (offset === this.lastEnd) this.readAhead(last + 1)
    this.lastEnd = offset + length
    const chunks = await this.chunks(indices, signal)
    for (let i = first; i <= last; i++) {
      const bytes = chunks.get(i)!
      const start = this.offsets[i]
      const from = Math.max(offset, start) - start
      const to = Math.min(offset + length, this.offsets[i + 1]) - start
      out.set(bytes.subarray(from, to), start + from - offset)
    }
    return out
  }

  /** The index of the chunk holding byte `pos`. */
  private chunkAt (pos: number): number {
    let lo = 0
    let hi = this.n - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.offsets[mid] <= pos) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  private fetching (): FetchJob | undefined {
    const job = this.o.job
    return job != null && !job.finished && job.have != null ? job : undefined
  }

  private async isTrusted (job: FetchJob): Promise<boolean> {
    this.trusted ??= (async () => {
      if (this.o.namedCid != null && this.o.namedCid === this.o.manifestCid) return true
      if (job.trust === 'origin' || job.trust === 'named') return true
      return await (job.confirmManifest?.() ?? false)
    })()
    return await this.trusted
  }

  /** Asks the fetch for the chunks after a sequential read, trusted or not (it fetches them anyway). */
  private readAhead (from: number): void {
    const job = this.fetching()
    if (job == null || from >= this.n) return
    const ahead: number[] = []
    for (let i = from; i < this.n && this.offsets[i] - this.offsets[from] < READ_AHEAD_BYTES; i++) {
      if (!hasBit(job.have!, i) && !this.cache.has(i)) ahead.push(i)
    }
    if (ahead.length > 0) job.demand.want(ahead)
  }

  private remember (i: number, bytes: Uint8Array): void {
    if (this.cache.has(i)) return
    this.cache.set(i, bytes)
    this.cacheBytes += bytes.length
    for (const [k, b] of this.cache) {
      if (this.cacheBytes <= CACHE_BYTES) break
      this.cache.delete(k)
      this.cacheBytes -= b.length
    }
  }

  private async fromStore (indices: number[], into: Map<number, Uint8Array>, signal?: AbortSignal): Promise<void> {
    if (indices.length === 0) return
    const digests = indices.map(i => this.o.manifest.chunkDigests.subarray(i * 32, i * 32 + 32))
    const chunks = await this.o.store.getMany(digests, { signal })
    indices.forEach((i, k) => { into.set(i, chunks[k].bytes); this.remember(i, chunks[k].bytes) })
  }

  private async chunks (indices: number[], signal?: AbortSignal): Promise<Map<number, Uint8Array>> {
    const got = new Map<number, Uint8Array>()
    const need: number[] = []
    for (const i of indices) {
      const c = this.cache.get(i)
      if (c != null) {
        // Touched: moved to the end of the eviction order.
        this.cache.delete(i)
        this.cache.set(i, c)
        got.set(i, c)
      } else {
        need.push(i)
      }
    }
    const job = this.fetching()
    if (job == null) {
      await this.settled(signal)
      await this.fromStore(need, got, signal)
      return got
    }
    if (need.length > 0 && !await this.isTrusted(job)) {
      // A manifest only a peer vouches for: nothing of it is served, stored or not, until the whole
      // image proves it (its chunks may make another image than the one asked for).
      await this.settled(signal)
      await this.fromStore(need, got, signal)
      return got
    }
    const wanted = new Set(need)
    const onVerified = (is: number[], bytes: Uint8Array): void => {
      for (const i of is) if (wanted.has(i) && !got.has(i)) { got.set(i, bytes); this.remember(i, bytes) }
    }
    job.on('verified', onVerified)
    try {
      await this.fromStore(need.filter(i => hasBit(job.have!, i)), got, signal)
      let missing = need.filter(i => !got.has(i))
      if (missing.length === 0) return got
      const deadline = Date.now() + READ_TIMEOUT_MS
      while (missing.length > 0) {
        if (job.finished) {
          await job.promise // the fetch's error, if it failed
          await this.fromStore(missing, got, signal)
          break
        }
        if (Date.now() > deadline) throw new NoSourceError(`chunks of ${job.status.image ?? job.status.ref} did not arrive in ${READ_TIMEOUT_MS / 1000} s`)
        job.demand.want(missing)
        await progressOf(job, 1000, signal)
        await this.fromStore(missing.filter(i => !got.has(i) && hasBit(job.have!, i)), got, signal)
        missing = missing.filter(i => !got.has(i))
      }
      return got
    } finally {
      job.off('verified', onVerified)
    }
  }

  /** A fetch that ended: its error, if it failed (the chunks a failed fetch left are not served). */
  private async settled (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    await this.o.job?.promise
  }
}

/** Resolves when the job verifies or stores chunks or ends, after `ms`, or when `signal` aborts (then throws). */
async function progressOf (job: FetchJob, ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      for (const e of ['verified', 'chunks', 'done']) job.off(e, done)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    for (const e of ['verified', 'chunks', 'done']) job.once(e, done)
    signal?.addEventListener('abort', done, { once: true })
  })
  signal?.throwIfAborted()
}
