import { decodeManifest, manifestCid, type Manifest } from '../chunks/manifest.js'
import type { Origin } from '../origin/origin.js'

/** The origin's own manifest of an image, with its CID. */
export interface OriginManifest {
  manifest: Manifest
  cid: string
}

/**
 * What the origin says of one image — its size, its manifest — each asked at most once per fetch. An
 * origin that cannot answer (down, no manifests) says nothing: a peer's claim then stands until the
 * whole-image digest decides. The manifest bytes read are reported apart from image bytes.
 */
export class OriginClaims {
  private manifestAnswer?: Promise<OriginManifest | null>
  private sizeAnswer?: Promise<number | null>

  constructor (private readonly origin: Origin | undefined, private readonly hex: string, private readonly counted: (bytes: number) => void) {}

  /** The origin's manifest for the image, or null when it has none (or cannot be asked). */
  async manifest (): Promise<OriginManifest | null> {
    this.manifestAnswer ??= (async () => {
      const origin = this.origin
      if (origin == null || !origin.capabilities.manifests) return null
      const bytes = await origin.readManifest(this.hex).catch(() => undefined)
      if (bytes == null) return null
      this.counted(bytes.length)
      try {
        const manifest = decodeManifest(bytes)
        if (Buffer.from(manifest.digest).toString('hex') !== this.hex) return null
        return { manifest, cid: manifestCid(bytes).toString() }
      } catch {
        return null
      }
    })()
    return await this.manifestAnswer
  }

  /** The image's size at the origin (a stat, not its manifest), or null when it cannot say. */
  async size (): Promise<number | null> {
    this.sizeAnswer ??= (async () => (await this.origin?.stat(this.hex).catch(() => undefined))?.size ?? null)()
    return await this.sizeAnswer
  }
}
