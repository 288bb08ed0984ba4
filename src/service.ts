import type { Writable } from 'node:stream'
import type { BundleImportResult, ImportBundleOptions } from './bundle/bundle-import.js'
import type { WriteBundleOptions } from './bundle/bundle-writer.js'
import type { BundleSummary } from './bundle/summary.js'
import type { CacheReport } from './cache/evictor.js'
import type { ImageDetails, ImageListing, ImportOptions, LeaseOptions, ProgressOptions } from './local-node.js'
import type { Lease } from './store/lease.js'
import type { BootProfileSummary } from './store/boot-profiles.js'
import type { ImageRecord } from './store/image-record.js'
import type { IngestResult } from './store/ingest.js'
import type { GcResult } from './store/level-store.js'
import type { VerifyReport } from './store/verify.js'

/**
 * The operations on a node's images, whether the store is opened in this process ({@link LocalNode})
 * or held by a running daemon and reached through its API ({@link ApiClient}). The CLI speaks only this.
 */
export interface ImageService {
  importFile: (path: string, options?: ImportOptions) => Promise<IngestResult>
  importStream: (source: AsyncIterable<Uint8Array>, options?: ImportOptions) => Promise<IngestResult>
  /** Writes the image to a file (temporary file, renamed once verified) or to a stream. */
  export: (ref: string, target: string | Writable, options?: ProgressOptions) => Promise<ImageRecord>
  list: () => Promise<ImageListing[]>
  inspect: (ref: string) => Promise<ImageDetails>
  /** The image's boot profile (ImageNotFoundError when it has none), and dropping it. */
  bootProfile: (ref: string) => Promise<BootProfileSummary>
  removeBootProfile: (ref: string) => Promise<{ ref: string, removed: boolean }>
  remove: (ref: string, options?: { force?: boolean }) => Promise<{ record: ImageRecord, freed: GcResult }>
  pin: (ref: string) => Promise<ImageRecord>
  unpin: (ref: string) => Promise<ImageRecord>
  lease: (ref: string, holder: string, options?: LeaseOptions) => Promise<Lease>
  release: (ref: string, holder: string) => Promise<{ ref: string, holder: string, released: boolean }>
  leases: () => Promise<Lease[]>
  df: () => Promise<CacheReport>
  gc: () => Promise<GcResult>
  verify: (ref?: string, options?: ProgressOptions) => Promise<VerifyReport>
  /**
   * Writes a bundle (CARv1) of images to a file (atomically) or a stream. A signer signs it in this
   * process: through a daemon's API, the private key never leaves the client.
   */
  createBundle: (refs: string[], target: string | Writable, options?: WriteBundleOptions) => Promise<BundleSummary>
  /** Imports all images of a bundle, or nothing; with `trust`, only a bundle signed by one of those keys. */
  importBundle: (source: AsyncIterable<Uint8Array>, options?: ImportBundleOptions) => Promise<BundleImportResult>
  close: () => Promise<void>
}
