import type { ServerResponse } from 'node:http'
import { chunkEntries, type Manifest } from '../chunks/manifest.js'
import type { ChunkStore } from '../store/chunk-store.js'
import { readImage } from '../store/read-image.js'
import type { ByteRange } from './range.js'

const WINDOW = 32

async function write (res: ServerResponse, bytes: Uint8Array): Promise<void> {
  if (res.write(bytes)) return
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => { res.off('close', onClose); resolve() }
    const onClose = (): void => { res.off('drain', onDrain); reject(new Error('client went away')) }
    res.once('drain', onDrain)
    res.once('close', onClose)
  })
}

/**
 * Sends a whole image: verified chunks as they are read, the whole-image digest checked at the end.
 * A failure at any point destroys the response instead of ending it, so the client sees a truncated
 * transfer (a connection reset, or a short chunked body) and never a clean end of wrong bytes.
 */
export async function sendWholeImage (res: ServerResponse, store: ChunkStore, manifest: Manifest, signal?: AbortSignal): Promise<void> {
  for await (const window of readImage(store, manifest, { signal })) {
    for (const c of window) await write(res, c.bytes)
  }
  res.end()
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
