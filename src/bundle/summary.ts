import type { CID } from 'multiformats/cid'
import type { ImageType, Manifest } from '../chunks/manifest.js'
import { digestRef } from '../chunks/ref.js'

/** One image in a bundle, as its manifest describes it. */
export interface BundleImage {
  ref: string
  manifest: string
  type: ImageType
  name: string
  format: string
  size: number
  chunks: number
}

/** What a bundle holds. */
export interface BundleSummary {
  images: BundleImage[]
  /** The signer's raw public key in base64url (see keyFingerprint), when the bundle is signed. */
  signedBy?: string
  /** Blocks in the bundle: the envelope, manifests and chunks. */
  blocks: number
  /** Size of the bundle file. */
  bytes: number
}

export function bundleImage (cid: CID, manifest: Manifest): BundleImage {
  return {
    ref: digestRef(Buffer.from(manifest.digest).toString('hex')),
    manifest: cid.toString(),
    type: manifest.meta.type,
    name: manifest.meta.name,
    format: manifest.meta.format,
    size: manifest.size,
    chunks: manifest.chunkDigests.length / 32
  }
}
