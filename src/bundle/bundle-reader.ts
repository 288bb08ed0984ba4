import * as dagCbor from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { verifyChunk, type VerifiedChunk } from '../chunks/cid.js'
import { decodeManifest, type Manifest } from '../chunks/manifest.js'
import { BundleInvalidError, ChunkCorruptError } from '../errors.js'
import type { AbortOptions } from '../store/chunk-store.js'
import { CarReader, MAX_CHUNK_SECTION_BYTES } from './car-reader.js'
import { dagCborCid, readEnvelope } from './signature.js'

export interface BundledManifest {
  cid: CID
  manifest: Manifest
}

/**
 * The manifests of a bundle are held in memory for the whole import, with an entry for each chunk they
 * name: their total is bounded, or a hostile header with thousands of roots could claim gigabytes.
 * 256 MiB of manifests name about 7.4 million chunks, some 450 GiB of images at the default chunk size.
 */
export const MAX_BUNDLE_MANIFEST_BYTES = 256 * 1024 * 1024

const keyOf = (digest: Uint8Array): string => Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')

/**
 * Reads a bundle as it streams, checking it as strictly as a bundle from a stranger deserves. The
 * envelope (when signed) and all manifests come first, so by the time {@link BundleReader.open} returns the
 * signature has verified, the images are known, and nothing has been written anywhere: a caller can
 * refuse an untrusted signer before touching its store. The chunks follow, each one verified against
 * its CID and named by some manifest, none twice. Memory: the manifests and one entry per chunk they
 * name (for the duplicate, stray and completeness checks), never the chunk data of more than a block.
 */
export class BundleReader {
  /** The images (root manifests) in root order. */
  readonly images: BundledManifest[]
  /** The signer's raw Ed25519 public key; the signature has verified. Undefined for an unsigned bundle. */
  readonly signer: Uint8Array | undefined
  readonly roots: CID[]
  private readonly car: CarReader
  /** Every chunk digest a manifest names, and whether the bundle held it. */
  private readonly wanted: Map<string, boolean>
  private blockCount: number

  private constructor (car: CarReader, images: BundledManifest[], signer: Uint8Array | undefined, blocks: number) {
    this.car = car
    this.roots = car.roots
    this.images = images
    this.signer = signer
    this.blockCount = blocks
    this.wanted = new Map()
    for (const { manifest } of images) {
      const d = manifest.chunkDigests
      for (let i = 0; i < d.length; i += 32) this.wanted.set(keyOf(d.subarray(i, i + 32)), false)
    }
  }

  /** Blocks read so far. */
  get blocks (): number { return this.blockCount }
  /** Bundle bytes read so far. */
  get bytes (): number { return this.car.bytesRead }

  /**
   * The chunks, each verified against its CID; ends at the end of the file. Throws BundleInvalidError
   * for a block that does not hash to its CID, that no manifest names, or that comes twice.
   */
  async * chunks (options: AbortOptions = {}): AsyncGenerator<VerifiedChunk> {
    while (true) {
      options.signal?.throwIfAborted()
      const block = await this.car.next(MAX_CHUNK_SECTION_BYTES)
      if (block === undefined) return
      this.blockCount++
      const { cid } = block
      const isChunk = cid.version === 1 && cid.code === raw.code && cid.multihash.code === sha256Hasher.code && cid.multihash.size === 32
      const key = isChunk ? keyOf(cid.multihash.digest) : undefined
      const seen = key !== undefined ? this.wanted.get(key) : undefined
      if (seen === undefined) {
        const again = this.images.some(i => i.cid.equals(cid)) || this.roots.some(r => r.equals(cid))
        throw new BundleInvalidError(again
          ? `the bundle holds block ${cid.toString()} twice, or after the chunks`
          : `the bundle holds a stray block ${cid.toString()} that no image in it names`)
      }
      if (seen) throw new BundleInvalidError(`the bundle holds chunk ${cid.toString()} twice`)
      let chunk: VerifiedChunk
      try {
        chunk = verifyChunk(cid.multihash.digest, block.bytes)
      } catch (err) {
        if (err instanceof ChunkCorruptError) throw new BundleInvalidError(`the bundle is damaged: ${err.message}`, { cause: err })
        throw err
      }
      this.wanted.set(key!, true)
      yield chunk
    }
  }

  /** After {@link chunks} ended: the digests that some manifest names and the bundle did not hold. */
  * missing (): Generator<Uint8Array> {
    for (const [key, held] of this.wanted) if (!held) yield Buffer.from(key, 'latin1')
  }

  async close (): Promise<void> {
    await this.car.close()
  }

  /** Reads a bundle's header, signature envelope and manifests; the chunks are left for {@link chunks}. */
  static async open (source: AsyncIterable<Uint8Array>): Promise<BundleReader> {
    const car = await CarReader.open(source)
    try {
      const { roots } = car
      if (roots.length === 0) throw new BundleInvalidError('the bundle names no images (its CAR header has no roots)')
      const ids = new Set(roots.map(r => r.toString()))
      if (ids.size !== roots.length) throw new BundleInvalidError('the bundle names a root twice')
      let blocks = 0
      const next = async (what: string, cid: CID): Promise<Uint8Array> => {
        const block = await car.next()
        if (block === undefined) throw new BundleInvalidError(`the bundle ends before ${what} ${cid.toString()}`)
        blocks++
        // The importer's order: envelope, then manifests in root order. Anything else was not made by
        // `bundle create`, or the root list was edited.
        if (!block.cid.equals(cid)) throw new BundleInvalidError(`the bundle's block ${blocks} is ${block.cid.toString()}, but ${what} ${String(cid)} must come there (blocks out of order, or the root list was changed)`)
        return block.bytes
      }
      const first = await next('its first root', roots[0])
      let signer: Uint8Array | undefined
      let imageRoots = roots
      if (roots[0].code === dagCbor.code) {
        const envelope = readEnvelope(first)
        if (envelope !== undefined) {
          if (!dagCborCid(first).equals(roots[0])) throw new BundleInvalidError(`the bundle's signature envelope does not hash to its CID ${String(roots[0])}`)
          imageRoots = roots.slice(1)
          const covered = envelope.images
          if (covered.length !== imageRoots.length || covered.some((c, i) => !c.equals(imageRoots[i]))) {
            throw new BundleInvalidError(`the bundle's root list (${imageRoots.length} images) is not the list its signature covers (${covered.length} images): it was changed after signing`)
          }
          signer = envelope.publicKey
        }
      }
      const images: BundledManifest[] = []
      let manifestBytes = 0
      for (const cid of imageRoots) {
        const bytes = images.length === 0 && signer === undefined ? first : await next('manifest', cid)
        manifestBytes += bytes.length
        if (manifestBytes > MAX_BUNDLE_MANIFEST_BYTES) throw new BundleInvalidError(`the bundle's manifests add up to more than ${MAX_BUNDLE_MANIFEST_BYTES} bytes; split it into smaller bundles`)
        try {
          images.push({ cid, manifest: decodeManifest(bytes, cid) })
        } catch (err) {
          throw new BundleInvalidError(`the bundle's manifest ${cid.toString()} is unusable: ${(err as Error).message}`, { cause: err })
        }
      }
      return new BundleReader(car, images, signer, blocks)
    } catch (err) {
      await car.close()
      throw err
    }
  }
}
