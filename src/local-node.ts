import type { Writable } from 'node:stream'
import { Evictor, type CacheReport, type EvictorOptions } from './cache/evictor.js'
import { InUse } from './cache/in-use.js'
import { importBundle, type BundleImportResult, type ImportBundleOptions } from './bundle/bundle-import.js'
import { writeBundleTo } from './bundle/bundle-output.js'
import { writeBundle, type WriteBundleOptions } from './bundle/bundle-writer.js'
import type { BundleSummary } from './bundle/summary.js'
import type { ChunkerParams } from './chunks/fastcdc.js'
import type { ImageMeta } from './chunks/manifest.js'
import { ChunkCorruptError, ChunkNotFoundError, DigestMismatchError, ImageNotAvailableError, ImageNotFoundError, ImageProtectedError, StoreCorruptError, UsageError } from './errors.js'
import type { AbortOptions } from './store/chunk-store.js'
import { exportToFile, exportToStream } from './store/export-file.js'
import { hexOf, type ImageRecord } from './store/image-record.js'
import { ingest, type IngestResult } from './store/ingest.js'
import { checkHolder, type Lease } from './store/lease.js'
import { LevelStore, type GcResult, type OpenStoreOptions } from './store/level-store.js'
import type { BootProfileSummary } from './store/boot-profiles.js'
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

/**
 * What the fetch of an image in state `fetching` has so far (a daemon adds it while the fetch runs):
 * bytes in all and by source (`local`: chunks already stored when it began), and the share of the image.
 */
export interface ReceivedSoFar {
  bytes: number
  local: number
  peer: number
  origin: number
  /** 0–100; absent until the image's size is known. */
  percent?: number
}

export type ImageDetails = ImageRecord & ImageUsage & { leases: Lease[], glanceIds?: string[], profile?: { chunks: number, bytes: number, encodedBytes: number, recorded: string }, received?: ReceivedSoFar }

/**
 * An image as `ls` shows it: its record, who leases it, the Glance ids that name it (when any),
 * `replica: true` when the cluster's replica policy keeps it here, and for a fetch in flight what it has so far.
 */
export type ImageListing = ImageRecord & { leasedBy: string[], glanceIds?: string[], replica?: boolean, received?: ReceivedSoFar }

export interface LeaseOptions {
  /** Milliseconds until the lease lapses by itself; omitted, it lasts until released. */
  ttlMs?: number
}

/** Longer leases are refused (a date past year 275760 cannot even be written). */
const MAX_LEASE_TTL_MS = 100 * 365 * 86_400_000

export interface LocalNodeOptions extends OpenStoreOptions {
  /** The size cap a daemon keeps the store under (without limits nothing is evicted), and its hooks. */
  cache?: EvictorOptions
}

/** What `verify` found: damaged chunks by image, and data LevelDB dropped on opening the store. */
export interface NodeVerifyReport extends VerifyReport {
  /**
   * Set when LevelDB skipped damaged parts of its write-ahead log while opening the store since the
   * last full verify: images written just before then may have lost chunks (reported above) or be
   * gone altogether. Cleared by a verify of all images.
   */
  recoveryDamage?: string
}

/**
 * The operations of one node on its own store: what the CLI runs in-process and, later, what the
 * daemon's API serves. Open it with {@link LocalNode.open} and close it when done.
 */
export class LocalNode {
  readonly store: LevelStore
  /** Images being read or served in this process: eviction leaves them alone. */
  readonly inUse = new InUse()
  /** Keeps the store under its cap (when it has one) and reports its usage. */
  readonly evictor: Evictor

  private constructor (store: LevelStore, cache?: EvictorOptions) {
    this.store = store
    this.evictor = new Evictor(store, this.inUse, cache)
  }

  static async open (options: LocalNodeOptions = {}): Promise<LocalNode> {
    const { cache, ...storeOptions } = options
    const store = await LevelStore.open(storeOptions)
    try {
      return new LocalNode(store, cache)
    } catch (err) {
      await store.close()
      throw err
    }
  }

  async close (): Promise<void> {
    await this.store.close()
  }

  /** Imports a file, a device, or standard input (`-`). */
  async importFile (path: string, options: ImportOptions = {}): Promise<IngestResult> {
    const input = await openInput(path, { signal: options.signal })
    try {
      return await this.importStream(input.stream, options)
    } finally {
      input.close()
    }
  }

  async importStream (source: AsyncIterable<Uint8Array>, options: ImportOptions = {}): Promise<IngestResult> {
    const meta: ImageMeta = { type: options.meta?.type ?? 'other', name: options.meta?.name ?? '', format: options.meta?.format ?? '' }
    return await ingest(this.store, source, { ...options, meta })
  }

  /** Writes an image to a file (atomically, sparse) or to a stream such as stdout. */
  async export (ref: string, target: string | Writable, options: ProgressOptions = {}): Promise<ImageRecord> {
    return await this.store.lock.read(async () => {
      const record = await this.available(ref)
      const release = this.inUse.hold(hexOf(record))
      try {
        const manifest = await this.store.getManifest(record)
        try {
          if (typeof target === 'string') await exportToFile(this.store, manifest, target, options)
          else await exportToStream(this.store, manifest, target, options)
        } catch (err) {
          throw await this.markDamaged(record, err)
        }
        await this.store.noteRead(record.ref)
      } finally {
        release()
      }
      return await this.store.getRecord(hexOf(record)) ?? record
    })
  }

  async list (): Promise<ImageListing[]> {
    const holders = new Map<string, string[]>()
    for (const l of await this.store.leases()) holders.set(l.ref, [...holders.get(l.ref) ?? [], l.holder])
    const glanceIds = new Map<string, string[]>()
    for (const a of await this.store.glanceAliases.all()) glanceIds.set(a.hex, [...glanceIds.get(a.hex) ?? [], a.id])
    return (await this.store.listImages()).map(r => {
      const ids = glanceIds.get(hexOf(r))
      return { ...r, hits: r.hits ?? 0, leasedBy: holders.get(r.ref) ?? [], ...(ids != null ? { glanceIds: ids } : {}), ...(this.evictor.keptAsReplica(hexOf(r)) ? { replica: true } : {}) }
    })
  }

  /** The bytes of a bundle (CARv1) of the images that `refs` name; signed when `options.signer` is given. */
  bundle (refs: string[], options: WriteBundleOptions = {}): AsyncGenerator<Uint8Array, BundleSummary> {
    return writeBundle(this.store, refs, options)
  }

  /** Writes a bundle to a file (temporary file, renamed when complete) or to a stream such as stdout. */
  async createBundle (refs: string[], target: string | Writable, options: WriteBundleOptions = {}): Promise<BundleSummary> {
    return await writeBundleTo(target, this.bundle(refs, options))
  }

  /** Imports every image of a bundle, or nothing (see src/bundle/bundle-import.ts for the checks). */
  async importBundle (source: AsyncIterable<Uint8Array>, options: ImportBundleOptions = {}): Promise<BundleImportResult> {
    return await importBundle(this.store, source, options)
  }

  async inspect (ref: string): Promise<ImageDetails> {
    const record = await this.store.resolve(ref)
    const glanceIds = await this.store.glanceAliases.idsOf(hexOf(record))
    const profile = await this.store.bootProfiles.load(hexOf(record), await this.store.getManifest(record)).catch(() => undefined)
    return { ...record, hits: record.hits ?? 0, ...await imageUsage(this.store, record), leases: await this.store.leasesOf(hexOf(record)), ...(glanceIds.length > 0 ? { glanceIds } : {}), ...(profile != null ? { profile: { chunks: profile.chunks.length, bytes: profile.bytes, encodedBytes: profile.encodedBytes, recorded: profile.recorded } } : {}) }
  }

  /**
   * The image's boot profile (the chunks a VM read first, in that order), checked against its manifest.
   * @throws ImageNotFoundError when the image has none
   */
  async bootProfile (ref: string): Promise<BootProfileSummary> {
    const record = await this.store.resolve(ref)
    const p = await this.store.bootProfiles.load(hexOf(record), await this.store.getManifest(record))
    if (p == null) throw new ImageNotFoundError(`${record.ref} has no boot profile (one is recorded from the reads of its first boot on a node)`)
    return { ref: record.ref, manifest: p.manifest, recorded: p.recorded, chunks: p.chunks.length, bytes: p.bytes, encodedBytes: p.encodedBytes, order: p.chunks }
  }

  /** Drops the image's boot profile; `removed` is false when it had none. */
  async removeBootProfile (ref: string): Promise<{ ref: string, removed: boolean }> {
    const record = await this.store.resolve(ref)
    return { ref: record.ref, removed: await this.store.bootProfiles.delete(hexOf(record)) }
  }

  /**
   * Forgets an image and frees the chunks no other image uses. A pinned or leased image needs
   * `force` (which also drops its leases).
   */
  async remove (ref: string, options: { force?: boolean } = {}): Promise<{ record: ImageRecord, freed: GcResult }> {
    const record = await this.store.transaction(async tx => {
      const record = await tx.resolve(ref)
      if (options.force !== true) {
        if (record.pinned) throw new ImageProtectedError(`${record.ref} is pinned; unpin it first or use --force`)
        const leases = await tx.leasesOf(hexOf(record))
        if (leases.length > 0) throw new ImageProtectedError(`${record.ref} is leased by ${leases.map(l => l.holder).join(', ')}; release it first or use --force`)
      }
      await tx.removeImage(record)
      return record
    })
    return { record, freed: await this.store.gc() }
  }

  /**
   * Leases a stored image to a holder (a VM running on it): it is not evicted nor removed without
   * force until released or, with a TTL, until the TTL runs out. Leasing again renews.
   */
  async lease (ref: string, holder: string, options: LeaseOptions = {}): Promise<Lease> {
    checkHolder(holder)
    if (options.ttlMs != null && !(options.ttlMs > 0 && options.ttlMs <= MAX_LEASE_TTL_MS)) {
      throw new UsageError('a lease TTL must be positive and at most 100 years')
    }
    // The image must still be there when the lease is written: eviction and rm decide under the same lock.
    return await this.store.transaction(async tx => {
      const record = await tx.resolve(ref)
      const previous = (await tx.leasesOf(hexOf(record))).find(l => l.holder === holder)
      const now = Date.now()
      const lease: Lease = {
        ref: record.ref,
        holder,
        created: previous?.created ?? new Date(now).toISOString(),
        ...(options.ttlMs != null ? { expires: new Date(now + options.ttlMs).toISOString() } : {})
      }
      await tx.putLease(lease)
      return lease
    })
  }

  /** Drops a holder's lease; `released` is false when it held none (releasing twice is harmless). */
  async release (ref: string, holder: string): Promise<{ ref: string, holder: string, released: boolean }> {
    checkHolder(holder)
    const record = await this.store.resolve(ref)
    return { ref: record.ref, holder, released: await this.store.deleteLease(hexOf(record), holder) }
  }

  /** Every live lease (expired ones lapse here). */
  async leases (): Promise<Lease[]> {
    return await this.store.leases()
  }

  /** The store's size, cap and what is pinned, leased, in use and reclaimable. */
  async df (): Promise<CacheReport> {
    return await this.evictor.report()
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

  /**
   * Checks every chunk of one image, or of every available or failed image when `ref` is omitted.
   * `failed` lists every checked image that is failed afterwards: damaged now, or failed before for a
   * reason that chunks alone do not show (an image whose chunks do not add up to its digest).
   */
  async verify (ref?: string, options: ProgressOptions = {}): Promise<NodeVerifyReport> {
    const records = ref != null
      ? [await this.store.resolve(ref)]
      : (await this.store.listImages()).filter(r => r.state === 'available' || r.state === 'failed')
    const recoveryDamage = await this.store.recoveryDamage()
    const report: NodeVerifyReport = await verifyImages(this.store, records, options)
    for (const r of records) {
      if (r.state === 'failed' && !report.failed.includes(r.ref)) report.failed.push(r.ref)
    }
    if (recoveryDamage != null) {
      report.recoveryDamage = recoveryDamage
      if (ref == null) await this.store.clearRecoveryDamage()
    }
    return report
  }

  private async available (ref: string): Promise<ImageRecord> {
    const record = await this.store.resolve(ref)
    if (record.state !== 'available') {
      throw new ImageNotAvailableError(`${record.ref} is ${record.state}${record.reason != null ? `: ${record.reason}` : ''}`)
    }
    return record
  }

  /**
   * A read that found damage marks the image failed and drops the bad chunk, so it is repaired, not
   * served. Returns the error to throw: for damage, the same kind of error naming the image.
   */
  private async markDamaged (record: ImageRecord, err: unknown): Promise<unknown> {
    if (!(err instanceof ChunkCorruptError || err instanceof ChunkNotFoundError || err instanceof DigestMismatchError || err instanceof StoreCorruptError)) return err
    await this.store.updateRecord(record.ref, { state: 'failed', reason: err.message }).catch(() => {})
    if (err instanceof ChunkCorruptError && err.digest != null) await this.store.deleteMany([err.digest]).catch(() => {})
    const message = `${record.ref} is damaged and now marked failed (run imgswarm verify; re-import or fetch it): ${err.message}`
    if (err instanceof ChunkCorruptError) return new ChunkCorruptError(message, { cause: err, digest: err.digest })
    if (err instanceof ChunkNotFoundError) return new ChunkNotFoundError(message, { cause: err })
    if (err instanceof StoreCorruptError) return new StoreCorruptError(message, { cause: err })
    return new DigestMismatchError(message)
  }
}
