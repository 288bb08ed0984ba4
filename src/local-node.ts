import type { Writable } from 'node:stream'
import type { ChunkerParams } from './chunks/fastcdc.js'
import type { ImageMeta } from './chunks/manifest.js'
import { ChunkCorruptError, ChunkNotFoundError, DigestMismatchError, ImageNotAvailableError, ImageProtectedError } from './errors.js'
import type { AbortOptions } from './store/chunk-store.js'
import { exportToFile, exportToStream } from './store/export-file.js'
import type { ImageRecord } from './store/image-record.js'
import { ingest, type IngestResult } from './store/ingest.js'
import { LevelStore, type GcResult, type OpenStoreOptions } from './store/level-store.js'
import { imageUsage, type ImageUsage } from './store/usage.js'
import { verifyImages, type VerifyReport } from './store/verify.js'
import { openInput } from './util/input.js'

export interface ProgressOptions extends AbortOptions {
  onProgress?: (bytes: number) => void
}

export interface ImportOptions extends ProgressOptions {
  meta?: Partial<ImageMeta>
  chunker?: ChunkerParams
}

export type ImageDetails = ImageRecord & ImageUsage

/**
 * The operations of one node on its own store: what the CLI runs in-process and, later, what the
 * daemon's API serves. Open it with {@link LocalNode.open} and close it when done.
 */
export class LocalNode {
  readonly store: LevelStore

  private constructor (store: LevelStore) {
    this.store = store
  }

  static async open (options: OpenStoreOptions = {}): Promise<LocalNode> {
    return new LocalNode(await LevelStore.open(options))
  }

  async close (): Promise<void> {
    await this.store.close()
  }

  /** Imports a file, a device, or standard input (`-`). */
  async importFile (path: string, options: ImportOptions = {}): Promise<IngestResult> {
    const { stream } = await openInput(path)
    return await this.importStream(stream, options)
  }

  async importStream (source: AsyncIterable<Uint8Array>, options: ImportOptions = {}): Promise<IngestResult> {
    const meta: ImageMeta = { type: options.meta?.type ?? 'other', name: options.meta?.name ?? '', format: options.meta?.format ?? '' }
    return await ingest(this.store, source, { ...options, meta })
  }

  /** Writes an image to a file (atomically, sparse) or to a stream such as stdout. */
  async export (ref: string, target: string | Writable, options: ProgressOptions = {}): Promise<ImageRecord> {
    return await this.store.lock.read(async () => {
      const record = await this.available(ref)
      const manifest = await this.store.getManifest(record)
      try {
        if (typeof target === 'string') await exportToFile(this.store, manifest, target, options)
        else await exportToStream(this.store, manifest, target, options)
      } catch (err) {
        await this.markDamaged(record, err)
        throw err
      }
      return await this.store.updateRecord(record.ref, { lastAccess: new Date().toISOString() })
    })
  }

  async list (): Promise<ImageRecord[]> {
    return await this.store.listImages()
  }

  async inspect (ref: string): Promise<ImageDetails> {
    const record = await this.store.resolve(ref)
    return { ...record, ...await imageUsage(this.store, record) }
  }

  /** Forgets an image and frees the chunks no other image uses. A pinned image needs `force`. */
  async remove (ref: string, options: { force?: boolean } = {}): Promise<{ record: ImageRecord, freed: GcResult }> {
    const record = await this.store.resolve(ref)
    if (record.pinned && options.force !== true) throw new ImageProtectedError(`${record.ref} is pinned; unpin it first or use --force`)
    await this.store.removeImage(record)
    return { record, freed: await this.store.gc() }
  }

  async pin (ref: string): Promise<ImageRecord> {
    return await this.store.updateRecord(ref, { pinned: true })
  }

  async unpin (ref: string): Promise<ImageRecord> {
    return await this.store.updateRecord(ref, { pinned: false })
  }

  async gc (): Promise<GcResult> {
    return await this.store.gc()
  }

  /** Checks every chunk of one image, or of every available image when `ref` is omitted. */
  async verify (ref?: string, options: ProgressOptions = {}): Promise<VerifyReport> {
    const records = ref != null ? [await this.store.resolve(ref)] : (await this.store.listImages()).filter(r => r.state === 'available')
    return await verifyImages(this.store, records, options)
  }

  private async available (ref: string): Promise<ImageRecord> {
    const record = await this.store.resolve(ref)
    if (record.state !== 'available') {
      throw new ImageNotAvailableError(`${record.ref} is ${record.state}${record.reason != null ? `: ${record.reason}` : ''}`)
    }
    return record
  }

  /** A read that found damage marks the image failed and drops the bad chunk, so it is repaired, not served. */
  private async markDamaged (record: ImageRecord, err: unknown): Promise<void> {
    if (!(err instanceof ChunkCorruptError || err instanceof ChunkNotFoundError || err instanceof DigestMismatchError)) return
    await this.store.updateRecord(record.ref, { state: 'failed', reason: err.message }).catch(() => {})
    if (err instanceof ChunkCorruptError && err.digest != null) await this.store.deleteMany([err.digest]).catch(() => {})
  }
}
