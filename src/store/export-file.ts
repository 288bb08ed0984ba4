import { randomBytes } from 'node:crypto'
import { open, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Writable } from 'node:stream'
import type { Manifest } from '../chunks/manifest.js'
import { OutputError, hasSystemCode } from '../errors.js'
import type { AbortOptions, ChunkStore } from './chunk-store.js'
import { readImage, type PlacedChunk } from './read-image.js'

export interface ExportOptions extends AbortOptions {
  /** Called with the number of image bytes written (or skipped as holes) so far. */
  onProgress?: (bytes: number) => void
}

const ZEROS = new Uint8Array(4 * 1024 * 1024)

function isZero (bytes: Uint8Array): boolean {
  return Buffer.compare(bytes, ZEROS.subarray(0, bytes.length)) === 0
}

/**
 * Writes an image to `path` atomically: into a temporary file beside it, which is synced and renamed
 * into place only after every chunk and the whole-image digest checked. Chunks of zeros become holes,
 * so a mostly empty raw disk stays sparse. On any failure the temporary file is removed and `path` is
 * left as it was.
 */
export async function exportToFile (store: ChunkStore, manifest: Manifest, path: string, options: ExportOptions = {}): Promise<void> {
  const dir = dirname(path)
  const dirStat = await stat(dir).catch(() => undefined)
  if (dirStat?.isDirectory() !== true) throw new OutputError(`cannot write ${path}: directory ${dir} does not exist`)
  const existing = await stat(path).catch(() => undefined)
  if (existing?.isDirectory() === true) throw new OutputError(`cannot write ${path}: it is a directory`)

  const tmp = join(dir, `.${basename(path)}.imgswarm-${randomBytes(6).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', 0o644).catch(err => { throw outputError(path, err) })
  let done = 0
  // One window's writes stay in flight while the next window is read and verified: positioned writes
  // of distinct ranges, so their order does not matter. Memory: one window more than readImage holds.
  let writing: Promise<unknown> = Promise.resolve()
  try {
    for await (const window of readImage(store, manifest, options)) {
      const writes = Promise.all([...dataRuns(window)].map(async run => await fh.writev(run.map(c => c.bytes), run[0].offset)))
      writes.catch(() => {}) // observed when it becomes `writing` and is awaited
      await writing
      options.onProgress?.(done)
      for (const c of window) done += c.bytes.length
      writing = writes
    }
    await writing
    options.onProgress?.(done)
    await fh.truncate(manifest.size)
    await fh.sync()
    await fh.close()
    await rename(tmp, path)
  } catch (err) {
    await writing.catch(() => {})
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw isSystemError(err) ? outputError(path, err) : err
  }
}

/** Consecutive chunks that are not all zeros: each run is one positioned vectored write. */
function * dataRuns (window: PlacedChunk[]): Generator<PlacedChunk[]> {
  let run: PlacedChunk[] = []
  for (const c of window) {
    if (isZero(c.bytes)) {
      if (run.length > 0) yield run
      run = []
    } else {
      run.push(c)
    }
  }
  if (run.length > 0) yield run
}

/**
 * Streams an image to a pipe or terminal, with backpressure. The bytes go out as chunks verify; if the
 * whole-image check fails at the end the promise rejects, so the caller exits non-zero.
 */
export async function exportToStream (store: ChunkStore, manifest: Manifest, out: Writable, options: ExportOptions = {}): Promise<void> {
  let done = 0
  let failed: Error | undefined
  const onError = (err: Error): void => { failed = err }
  out.on('error', onError)
  try {
    for await (const window of readImage(store, manifest, options)) {
      for (const c of window) {
        if (failed != null) throw failed
        if (!out.write(c.bytes)) await new Promise<void>((resolve, reject) => {
          out.once('drain', resolve)
          out.once('error', reject)
        })
        done += c.bytes.length
      }
      options.onProgress?.(done)
    }
    if (failed != null) throw failed
  } catch (err) {
    // `export … -o - | head`: the reader left; say so instead of "write EPIPE".
    if (hasSystemCode(err, 'EPIPE')) throw new OutputError('cannot write to standard output: the reader closed it', { cause: err })
    throw err
  } finally {
    out.off('error', onError)
  }
}

/** The file system's own errors (they carry an errno code); imgswarm's errors pass through as they are. */
function isSystemError (err: unknown): boolean {
  return typeof (err as { errno?: unknown })?.errno === 'number' || typeof (err as { syscall?: unknown })?.syscall === 'string'
}

const WHY: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  EIO: 'input/output error'
}

/** One line naming the target (never the temporary file) and the reason in words. */
function outputError (path: string, err: unknown): OutputError {
  const code = Object.keys(WHY).find(c => hasSystemCode(err, c))
  const why = code != null ? WHY[code] : (err as Error).message.replace(/, \w+ '[^']*'$/, '')
  return new OutputError(`cannot write ${path}: ${why}`, { cause: err })
}
