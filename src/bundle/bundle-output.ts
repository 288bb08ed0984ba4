import { randomBytes } from 'node:crypto'
import { open, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Writable } from 'node:stream'
import { OutputError } from '../errors.js'

const WRITE_BYTES = 1024 * 1024

/**
 * Drains a bundle stream into `target` and returns the stream's result. A path is written atomically:
 * into a temporary file beside it, synced and renamed into place only once the whole bundle was
 * produced, so a failed or interrupted create leaves no partial bundle that looks complete. A stream
 * (stdout) gets the bytes with backpressure; a failure then rejects, so the caller exits non-zero.
 */
export async function writeBundleTo<R> (target: string | Writable, bytes: AsyncGenerator<Uint8Array, R>): Promise<R> {
  if (typeof target !== 'string') {
    return await drain(bytes, async piece => {
      if (!target.write(piece)) await new Promise(resolve => target.once('drain', resolve))
    })
  }
  const dir = dirname(target)
  if ((await stat(dir).catch(() => undefined))?.isDirectory() !== true) throw new OutputError(`cannot write ${target}: directory ${dir} does not exist`)
  if ((await stat(target).catch(() => undefined))?.isDirectory() === true) throw new OutputError(`cannot write ${target}: it is a directory`)
  const tmp = join(dir, `.${basename(target)}.imgswarm-${randomBytes(6).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', 0o644).catch(err => { throw new OutputError(`cannot write ${target}: ${(err as Error).message}`, { cause: err }) })
  // CarWriter hands out a block's length prefix, CID and data as three pieces: gathered into writes
  // of about a megabyte instead of three system calls a block.
  let batch: Uint8Array[] = []
  let batched = 0
  const flush = async (): Promise<void> => {
    const pieces = batch
    batch = []
    batched = 0
    if (pieces.length > 0) await fh.writev(pieces).catch(err => { throw new OutputError(`cannot write ${target}: ${(err as Error).message}`, { cause: err }) })
  }
  try {
    const result = await drain(bytes, async piece => {
      batch.push(piece)
      batched += piece.length
      if (batched >= WRITE_BYTES) await flush()
    })
    await flush()
    await fh.sync()
    await fh.close()
    await rename(tmp, target)
    return result
  } catch (err) {
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  }
}

async function drain<R> (bytes: AsyncGenerator<Uint8Array, R>, write: (piece: Uint8Array) => Promise<void>): Promise<R> {
  try {
    while (true) {
      const r = await bytes.next()
      if (r.done === true) return r.value
      await write(r.value)
    }
  } finally {
    await bytes.return?.(undefined as R)
  }
}
