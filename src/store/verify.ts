import type { Manifest } from '../chunks/manifest.js'
import type { AbortOptions } from './chunk-store.js'
import type { ImageRecord } from './image-record.js'
import type { LevelStore } from './level-store.js'

export interface VerifyProblem {
  /** `sha256:<hex>` of the image. */
  image: string
  /** The chunk CID, or `manifest` when the manifest itself is missing or damaged. */
  chunk: string
  problem: 'missing' | 'corrupt'
}

export interface VerifyReport {
  images: number
  chunks: number
  bytes: number
  problems: VerifyProblem[]
  /** Images found damaged, now marked `failed`. */
  failed: string[]
}

const WINDOW = 64

/**
 * Re-reads every chunk of the given images and checks it against its digest. Damaged and missing
 * chunks are dropped (so a later import or fetch stores them again) and every image that misses a chunk is marked
 * `failed` with the reason, so it is never served as `available` again until repaired.
 */
export async function verifyImages (store: LevelStore, records: ImageRecord[], options: AbortOptions & { onProgress?: (bytes: number) => void } = {}): Promise<VerifyReport> {
  return await store.lock.read(async () => {
    const report: VerifyReport = { images: 0, chunks: 0, bytes: 0, problems: [], failed: [] }
    const good = new Set<string>()
    /** Damaged chunks, and missing ones the index may still name: dropped, so a re-import or fetch stores them again. */
    const dropped: Uint8Array[] = []
    for (const rec of records) {
      options.signal?.throwIfAborted()
      report.images++
      const problems: VerifyProblem[] = []
      let manifest: Manifest | undefined
      try {
        manifest = await store.getManifest(rec)
      } catch {
        problems.push({ image: rec.ref, chunk: 'manifest', problem: 'corrupt' })
      }
      const digests = manifest?.chunkDigests ?? new Uint8Array(0)
      const lengths = manifest != null ? new DataView(manifest.chunkLengths.buffer, manifest.chunkLengths.byteOffset) : undefined
      for (let i = 0; i < digests.length / 32; i += WINDOW) {
        const window: Uint8Array[] = []
        for (let j = i; j < Math.min(i + WINDOW, digests.length / 32); j++) {
          report.chunks++
          report.bytes += lengths!.getUint32(j * 4)
          const d = digests.subarray(j * 32, j * 32 + 32)
          if (!good.has(Buffer.from(d).toString('latin1'))) window.push(d)
        }
        const health = await store.checkMany(window)
        health.forEach((h, k) => {
          if (h === 'ok') {
            good.add(Buffer.from(window[k]).toString('latin1'))
            return
          }
          problems.push({ image: rec.ref, chunk: store.cidOf(window[k]).toString(), problem: h })
          dropped.push(window[k])
        })
        options.onProgress?.(report.bytes)
      }
      if (problems.length > 0) {
        report.problems.push(...problems)
        report.failed.push(rec.ref)
        const missing = problems.filter(p => p.problem === 'missing').length
        const damaged = problems.length - missing
        await store.updateRecord(rec.ref, { state: 'failed', reason: `verify found ${missing} missing and ${damaged} damaged chunks` })
      }
    }
    await store.deleteMany(dropped).catch(() => {}) // best effort: a damaged table may refuse even deletes
    return report
  })
}
