import { createReadStream, open as openFd } from 'node:fs'
import { Socket } from 'node:net'
import { stat } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { InputError, hasSystemCode } from '../errors.js'

/** Reads of 1 MiB: fewer, larger pieces cost less per byte in the chunker and the hash. */
const READ_BYTES = 1024 * 1024

export interface OpenedInput {
  stream: AsyncIterable<Uint8Array>
  /** Bytes in a regular file; undefined for pipes and devices. */
  size: number | undefined
  /** Closes the file if it was not read to the end (standard input is left open). */
  close: () => void
}

export interface OpenInputOptions {
  /** Standard input, for `-` (process.stdin by default). */
  stdin?: Readable
  /**
   * Ends the read at once, with the signal's reason, even while it waits on a pipe that sends
   * nothing; the input (standard input too) is closed.
   */
  signal?: AbortSignal
}

/**
 * Opens an image file for reading, or standard input for `-`, with a one-line reason for whatever
 * makes it unusable. Regular files, block devices and pipes are accepted.
 */
export async function openInput (path: string, options: OpenInputOptions = {}): Promise<OpenedInput> {
  const { stdin = process.stdin, signal } = options
  if (path === '-') return { stream: untilAborted(stdin, signal, () => { stdin.destroy() }), size: undefined, close: () => {} }
  let st
  try {
    st = await stat(path)
  } catch (err) {
    throw inputError(path, err)
  }
  if (st.isDirectory()) throw new InputError(`cannot import ${path}: it is a directory`)
  if (!st.isFile() && !st.isBlockDevice() && !st.isFIFO() && !st.isCharacterDevice()) {
    throw new InputError(`cannot import ${path}: not a regular file, device or pipe`)
  }
  if (st.isFIFO()) {
    // A named pipe is read as a socket (non-blocking), so that closing it ends a read that waits on
    // a writer that sends nothing; a file read stream would hold the process until the writer closes.
    const fd = await new Promise<number>((resolve, reject) => {
      openFd(path, 'r', (err, fd) => { if (err != null) reject(inputError(path, err)); else resolve(fd) })
    })
    const pipe = new Socket({ fd, readable: true, writable: false })
    const close = (): void => { pipe.destroy() }
    return { stream: untilAborted(wrapErrors(pipe, path), signal, close), size: undefined, close }
  }
  const stream = createReadStream(path, { highWaterMark: READ_BYTES })
  // Surface open errors (permissions) before any work starts.
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve())
    stream.once('error', err => reject(inputError(path, err)))
  })
  const close = (): void => { stream.destroy() }
  return { stream: untilAborted(wrapErrors(stream, path), signal, close), size: st.isFile() ? st.size : undefined, close }
}

/** `source`, ended by `signal` even while a read is pending; `onAbort` releases what the read holds. */
async function * untilAborted (source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined, onAbort: () => void): AsyncGenerator<Uint8Array> {
  if (signal == null) {
    yield * source
    return
  }
  signal.throwIfAborted()
  const it = source[Symbol.asyncIterator]()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    while (true) {
      // One listener per read, removed when the read settles: racing every read against one shared,
      // never-settling promise would keep each resolved read (a 1 MiB buffer) alive to the end.
      const next = await new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
        const stop = (): void => { reject(signal.reason) }
        signal.addEventListener('abort', stop, { once: true })
        it.next().then(r => { signal.removeEventListener('abort', stop); resolve(r) }, (err: unknown) => { signal.removeEventListener('abort', stop); reject(err) })
      })
      if (next.done === true) return
      yield next.value
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    // Not awaited: after an abort the source may still wait on a read that never completes.
    it.return?.()?.catch(() => {})
  }
}

async function * wrapErrors (stream: AsyncIterable<Uint8Array>, path: string): AsyncGenerator<Uint8Array> {
  try {
    yield * stream
  } catch (err) {
    throw inputError(path, err)
  }
}

function inputError (path: string, err: unknown): InputError {
  if (err instanceof InputError) return err
  const why = hasSystemCode(err, 'ENOENT')
    ? 'no such file'
    : hasSystemCode(err, 'EACCES') || hasSystemCode(err, 'EPERM')
      ? 'permission denied'
      : hasSystemCode(err, 'EISDIR') ? 'it is a directory' : (err as Error).message
  return new InputError(`cannot import ${path}: ${why}`, { cause: err })
}
