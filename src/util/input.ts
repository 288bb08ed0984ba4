import { createReadStream } from 'node:fs'
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

/**
 * Opens an image file for reading, or standard input for `-`, with a one-line reason for whatever
 * makes it unusable. Regular files, block devices and pipes are accepted.
 */
export async function openInput (path: string, stdin: Readable = process.stdin): Promise<OpenedInput> {
  if (path === '-') return { stream: stdin, size: undefined, close: () => {} }
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
  const stream = createReadStream(path, { highWaterMark: READ_BYTES })
  // Surface open errors (permissions) before any work starts.
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve())
    stream.once('error', err => reject(inputError(path, err)))
  })
  return { stream: wrapErrors(stream, path), size: st.isFile() ? st.size : undefined, close: () => { stream.destroy() } }
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
