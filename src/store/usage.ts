import { chunkEntries } from '../chunks/manifest.js'
import type { ImageRecord } from './image-record.js'
import type { LevelStore } from './level-store.js'

/** How much of an image lives in chunks that other stored images use too. */
export interface ImageUsage {
  sharedBytes: number
  uniqueBytes: number
}

export async function imageUsage (store: LevelStore, record: ImageRecord): Promise<ImageUsage> {
  const others = new Set<string>()
  for (const rec of await store.listImages()) {
    if (rec.ref === record.ref) continue
    const m = await store.getManifest(rec).catch(() => undefined)
    if (m == null) continue
    for (let i = 0; i < m.chunkDigests.length; i += 32) others.add(Buffer.from(m.chunkDigests.subarray(i, i + 32)).toString('latin1'))
  }
  const usage: ImageUsage = { sharedBytes: 0, uniqueBytes: 0 }
  for (const e of chunkEntries(await store.getManifest(record))) {
    if (others.has(Buffer.from(e.digest).toString('latin1'))) usage.sharedBytes += e.length
    else usage.uniqueBytes += e.length
  }
  return usage
}
