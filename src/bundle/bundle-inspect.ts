import type { AbortOptions } from '../store/chunk-store.js'
import { BundleReader } from './bundle-reader.js'
import { keyFingerprint } from './operator-key.js'
import { bundleImage, type BundleSummary } from './summary.js'

export interface BundleInspection extends BundleSummary {
  /** The CAR roots: the signature envelope (when signed), then the manifests. */
  roots: string[]
  /** Chunk blocks, each verified against its CID. */
  chunks: number
  /** Chunks that the images need and the bundle does not hold (0 for a bundle made by `bundle create`). */
  missingChunks: number
}

/**
 * Reads a whole bundle without importing it: the same checks as an import (signature, every block
 * against its CID, no stray or repeated blocks) except completeness, which needs a store; chunks the
 * bundle lacks are counted instead. Memory is bounded as for an import.
 */
export async function inspectBundle (source: AsyncIterable<Uint8Array>, options: AbortOptions & { onProgress?: (bytes: number) => void } = {}): Promise<BundleInspection> {
  const reader = await BundleReader.open(source)
  try {
    let chunks = 0
    for await (const _ of reader.chunks(options)) {
      chunks++
      options.onProgress?.(reader.bytes)
    }
    let missingChunks = 0
    for (const _ of reader.missing()) missingChunks++
    return {
      roots: reader.roots.map(r => r.toString()),
      images: reader.images.map(i => bundleImage(i.cid, i.manifest)),
      ...(reader.signer != null ? { signedBy: keyFingerprint(reader.signer) } : {}),
      blocks: reader.blocks,
      bytes: reader.bytes,
      chunks,
      missingChunks
    }
  } finally {
    await reader.close()
  }
}
