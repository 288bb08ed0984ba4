import { encodeManifest } from './chunks/manifest.js'
import { UsageError } from './errors.js'
import { openOrigin } from './origin/open-origin.js'
import type { Origin } from './origin/origin.js'
import type { ImageRecord } from './store/image-record.js'
import type { LevelStore } from './store/level-store.js'
import { readImage } from './store/read-image.js'

export interface PublishResult {
  ref: string
  origin: string
  size: number
  manifest: string
  /** Bytes of the boot profile written beside the manifest, when the node had one. */
  profileBytes?: number
}

/**
 * Uploads a stored image and its manifest to a writable origin, under the documented layout
 * (`sha256/<hex>`, `sha256/<hex>.manifest`, and `sha256/<hex>.profile` when the node has a boot profile). The bytes are read from the store, every chunk
 * verified, and the origin checks the digest before the object becomes visible.
 */
export async function publishImage (store: LevelStore, record: ImageRecord, origin: Origin, options: { signal?: AbortSignal } = {}): Promise<PublishResult> {
  if (!origin.capabilities.write || origin.write == null || origin.writeManifest == null) {
    throw new UsageError(`origin ${origin.url} cannot be written; publish to a file:// or s3:// origin`)
  }
  const manifest = await store.getManifest(record)
  const hex = record.ref.slice('sha256:'.length)
  async function * bytes (): AsyncGenerator<Uint8Array> {
    for await (const window of readImage(store, manifest, options)) for (const c of window) yield c.bytes
  }
  await origin.write(hex, bytes(), { ...options, size: record.size })
  await origin.writeManifest(hex, encodeManifest(manifest), options)
  // The boot profile goes beside the manifest where the node has one and the origin keeps them.
  const profile = await store.bootProfiles.raw(hex)
  let profileBytes: number | undefined
  if (profile != null && origin.writeProfile != null) {
    await origin.writeProfile(hex, profile, options)
    profileBytes = profile.length
  }
  return { ref: record.ref, origin: origin.url, size: record.size, manifest: record.manifest, ...(profileBytes != null ? { profileBytes } : {}) }
}

/** {@link publishImage} to an origin given by URL, opened for the call. */
export async function publishTo (store: LevelStore, record: ImageRecord, originUrl: string, options: { signal?: AbortSignal } = {}): Promise<PublishResult> {
  const origin = await openOrigin(originUrl)
  try {
    return await publishImage(store, record, origin, options)
  } finally {
    await origin.close?.()
  }
}
