import type { ServerResponse } from 'node:http'
import { DigestMismatchError } from '../errors.js'
import type { FetchJob } from '../fetch/fetch-job.js'
import { AheadBuffer } from '../fetch/ahead-buffer.js'
import { chunkCount, chunkEntries, type Manifest } from '../chunks/manifest.js'
import type { ChunkStore } from '../store/chunk-store.js'
import { readImage } from '../store/read-image.js'
import type { ImageReader } from '../serve/image-reader.js'
import type { ByteRange } from './range.js'

const WINDOW = 32

/** Writes to a response with backpressure; rejects when the client goes away while it waits. */
export async function write (res: ServerResponse, bytes: Uint8Array): Promise<void> {
  if (res.write(bytes)) return
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => { res.off('close', onClose); resolve() }
    const onClose = (): void => { res.off('drain', onDrain); reject(new Error('client went away')) }
    res.once('drain', onDrain)
    res.once('close', onClose)
  })
}

/**
 * Writes pieces to a response one behind: the last piece goes out only with {@link finish}, once the
 * caller has checked the whole image. A check that fails before that leaves the client short of the
 * `Content-Length` it was promised, so no client sees a complete body of wrong bytes.
 */
class HeldBackWriter {
  private held?: Uint8Array
  constructor (private readonly res: ServerResponse) {}

  async write (bytes: Uint8Array): Promise<void> {
    if (this.held != null) await write(this.res, this.held)
    this.held = bytes
  }

  async finish (): Promise<void> {
    if (this.held != null) await write(this.res, this.held)
    this.held = undefined
    this.res.end()
  }
}

/**
 * Sends a whole image: verified chunks as they are read, the whole-image digest checked before the
 * last chunk goes out. A failure at any point destroys the response instead of ending it, so the
 * client sees a truncated transfer (a connection reset, or a short body) and never a clean end of
 * wrong bytes.
 */
export async function sendWholeImage (res: ServerResponse, store: ChunkStore, manifest: Manifest, signal?: AbortSignal): Promise<void> {
  const out = new HeldBackWriter(res)
  // readImage throws after the last window when the digest does not match: the held chunk never goes.
  for await (const window of readImage(store, manifest, { signal })) {
    for (const c of window) await out.write(c.bytes)
  }
  await out.finish()
}

/** Sends `range` of an image, chunk by chunk, each chunk verified; the caller has checked the image. */
export async function sendImageRange (res: ServerResponse, store: ChunkStore, manifest: Manifest, range: ByteRange, signal?: AbortSignal): Promise<void> {
  let window: Array<{ digest: Uint8Array, offset: number, length: number }> = []
  const flush = async (): Promise<void> => {
    const chunks = await store.getMany(window.map(e => e.digest), { signal })
    for (let i = 0; i < chunks.length; i++) {
      const e = window[i]
      const from = Math.max(range.start, e.offset) - e.offset
      const to = Math.min(range.end + 1, e.offset + e.length) - e.offset
      await write(res, chunks[i].bytes.subarray(from, to))
    }
    window = []
  }
  for (const e of chunkEntries(manifest)) {
    if (e.offset + e.length <= range.start) continue
    if (e.offset > range.end) break
    window.push(e)
    if (window.length === WINDOW) await flush()
  }
  if (window.length > 0) await flush()
  res.end()
}

/**
 * Verified chunks a streaming reader keeps ahead of the one it sends next, at most; later ones it reads
 * from the store. 8 MiB rather than 32: a 4 GiB receive peaked ~35 MB lower at the same speed
 * (docs/benchmarks.md §15), and what a lagging reader misses it reads back anyway.
 */
const EARLY_BYTES = 8 * 1024 * 1024

/** Resolves when the job verifies or stores more chunks or ends, or after `ms` (a re-check guards against a missed event). */
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

/**
 * Sends a whole image while it is being fetched, in order: each chunk the moment the fetch verifies
 * it (before it reaches the disk) when the reader is there, else from the store (verified on read like
 * any other), and the whole-image digest checked before the last chunk goes out. If the fetch fails, or
 * the digest does not match (a peer's manifest that lied about the image), the response is destroyed
 * rather than ended. Memory: at most EARLY_BYTES of chunks that arrived ahead of the reader (the nearest).
 */
export async function sendWholeImageWhileFetching (res: ServerResponse, store: ChunkStore, manifest: Manifest, job: FetchJob, sendHeaders: () => void, signal?: AbortSignal): Promise<void> {
  const out = new HeldBackWriter(res)
  const n = chunkCount(manifest)
  const digestAt = (i: number): Uint8Array => manifest.chunkDigests.subarray(i * 32, i * 32 + 32)
  let next = 0
  let started = false
  const early = new AheadBuffer(EARLY_BYTES)
  const onVerified = (indices: number[], bytes: Uint8Array): void => {
    for (const i of indices) early.offer(i, bytes, next)
  }
  const send = async (bytes: Uint8Array): Promise<void> => {
    // Headers wait for the first verified chunk, so a fetch that fails early answers with its error.
    if (!started) { sendHeaders(); started = true }
    await out.write(bytes)
    next++
  }
  job.on('verified', onVerified)
  try {
    while (next < n) {
      const held = early.take(next)
      if (held != null) {
        await send(held)
        continue
      }
      const window: number[] = []
      for (let i = next; i < n && window.length < WINDOW && !early.has(i); i++) window.push(i)
      const present = await store.hasMany(window.map(digestAt), { signal })
      let run = 0
      while (run < window.length && present[run]) run++
      if (run === 0 && job.finished) {
        await job.promise // throws the fetch's error; once available, every chunk is stored
        run = 1
      }
      if (run > 0) {
        for (const c of await store.getMany(window.slice(0, run).map(digestAt), { signal })) await send(c.bytes)
        early.dropBefore(next)
        continue
      }
      await progressOf(job, 2000, signal)
    }
  } finally {
    job.off('verified', onVerified)
  }
  if (!started) sendHeaders()
  // The last chunk goes only once the image is recorded available: a client that got the whole
  // image then finds it available (HEAD, ls), never still `fetching`. The fetch hashed the whole
  // image in order; every chunk sent here was verified against the same manifest's digests, so when
  // that manifest is the one the fetch proved, these are the image's bytes (no second hash).
  await job.promise
  if (job.verified !== manifest) throw new DigestMismatchError(`the manifest sha256:${Buffer.from(manifest.digest).toString('hex')} was streamed under did not make the image; the fetch took another`)
  await out.finish()
}

/** Bytes of a range read at once while the image arrives. */
const RANGE_PIECE = 4 * 1024 * 1024

/**
 * Sends `range` of an image that is still being fetched: each piece as soon as its chunks are
 * verified (the reader fetches them first). Headers go with the first piece, so a read that fails
 * before any byte answers with its error.
 */
export async function sendRangeWhileFetching (res: ServerResponse, reader: ImageReader, range: ByteRange, sendHeaders: () => void, signal?: AbortSignal): Promise<void> {
  let started = false
  for (let pos = range.start; pos <= range.end;) {
    const n = Math.min(RANGE_PIECE, range.end + 1 - pos)
    const bytes = await reader.read(pos, n, signal)
    if (!started) { sendHeaders(); started = true }
    await write(res, bytes)
    pos += n
  }
  res.end()
}
