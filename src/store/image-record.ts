import type { ImageType } from '../chunks/manifest.js'

export type ImageState = 'fetching' | 'available' | 'failed'

/** What a node knows about one image. Stored as JSON under the image's digest. */
export interface ImageRecord {
  /** `sha256:<hex>` of the whole image. */
  ref: string
  size: number
  state: ImageState
  /** Why the image is `failed`; absent otherwise. */
  reason?: string
  pinned: boolean
  /** The manifest CID (string form). */
  manifest: string
  chunks: number
  type: ImageType
  name: string
  format: string
  /** ISO-8601 times. */
  created: string
  lastAccess: string
  /** Reads of the whole image or a range (export, API, fetch of a stored image); absent in old records. */
  hits?: number
  /** Where the image's bytes came from when it was stored; absent in old records. */
  sources?: ImageSources
}

/** Bytes of an image by where they came from: already stored, neighbour peers, the object store. */
export interface ImageSources {
  local: number
  peers: number
  origin: number
}

export function hexOf (record: ImageRecord): string {
  return record.ref.slice('sha256:'.length)
}
