import { chunkCidFromDigest } from '../chunks/cid.js'
import { encodeManifest } from '../chunks/manifest.js'
import { BundleInvalidError } from '../errors.js'
import type { CarBlock } from './car-reader.js'
import { carBytes } from './car-writer.js'
import { BundleReader } from './bundle-reader.js'
import type { WriteBundleOptions } from './bundle-writer.js'
import { keyFingerprint } from './operator-key.js'
import { makeEnvelope } from './signature.js'
import { bundleImage, type BundleSummary } from './summary.js'

/**
 * Re-emits an unsigned bundle from a daemon, signed here when `options.signer` is given: the header
 * gets the envelope as its first root and the envelope goes first, then the daemon's blocks, checked
 * on the way as an import would check them (the client signs only what it has seen to be sound). This
 * is how a bundle is signed through the API without the private key ever leaving the client.
 */
export async function * relayBundle (source: AsyncIterable<Uint8Array>, options: WriteBundleOptions = {}): AsyncGenerator<Uint8Array, BundleSummary> {
  const reader = await BundleReader.open(source)
  try {
    if (reader.signer != null) throw new BundleInvalidError('the daemon sent a signed bundle where an unsigned one was asked for')
    const cids = reader.images.map(i => i.cid)
    const envelope = options.signer != null ? makeEnvelope(cids, options.signer) : undefined
    let blocks = 0
    const all = async function * (): AsyncGenerator<CarBlock> {
      if (envelope != null) yield { cid: envelope.cid, bytes: envelope.bytes }
      // Deterministic encoding: these are the bytes the daemon sent, which hashed to their CIDs.
      for (const { cid, manifest } of reader.images) yield { cid, bytes: encodeManifest(manifest) }
      for await (const chunk of reader.chunks(options)) yield { cid: chunkCidFromDigest(chunk.digest), bytes: chunk.bytes }
    }
    const counted = async function * (): AsyncGenerator<CarBlock> {
      for await (const block of all()) {
        blocks++
        yield block
      }
    }
    let bytes = 0
    for await (const piece of carBytes([...(envelope != null ? [envelope.cid] : []), ...cids], counted())) {
      bytes += piece.length
      options.onProgress?.(bytes)
      yield piece
    }
    const missing = reader.missing().next()
    if (missing.done !== true) throw new BundleInvalidError(`the daemon's bundle lacks chunk ${chunkCidFromDigest(missing.value).toString()}`)
    return {
      images: reader.images.map(i => bundleImage(i.cid, i.manifest)),
      ...(options.signer != null ? { signedBy: keyFingerprint(options.signer.publicKey) } : {}),
      blocks,
      bytes
    }
  } finally {
    await reader.close()
  }
}
