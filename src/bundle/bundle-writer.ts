import { CID } from 'multiformats/cid'
import { chunkCidFromDigest } from '../chunks/cid.js'
import { chunkEntries, encodeManifest, manifestCid, type ChunkEntry, type Manifest } from '../chunks/manifest.js'
import { ImageNotAvailableError, InvalidManifestError, UsageError } from '../errors.js'
import type { AbortOptions } from '../store/chunk-store.js'
import type { LevelStore } from '../store/level-store.js'
import { readWindows } from '../store/read-image.js'
import type { RwLock } from '../util/rw-lock.js'
import type { CarBlock } from './car-reader.js'
import { carBytes } from './car-writer.js'
import { keyFingerprint, type BundleSigner } from './operator-key.js'
import { makeEnvelope } from './signature.js'
import { bundleImage, type BundleSummary } from './summary.js'

export interface WriteBundleOptions extends AbortOptions {
  /** Signs the bundle; without it the bundle is unsigned. */
  signer?: BundleSigner
  /** Called with the bundle bytes produced so far. */
  onProgress?: (bytes: number) => void
}

interface BundledImage {
  cid: CID
  manifest: Manifest
  bytes: Uint8Array
}

/**
 * The bytes of a bundle (a CARv1 file) of the images that `refs` name. Roots: the signature envelope
 * when signed, then the manifest CIDs in the order given. Blocks, in the order the importer relies on:
 * the envelope, every manifest, then the chunks of each image in manifest order, each chunk once
 * however many images share it. The store's read lock is held from the first read to the end (or an
 * early return), so GC cannot sweep a chunk of an image being bundled. Memory: two windows of chunks
 * and the set of chunk digests written (about 100 bytes a chunk).
 */
export async function * writeBundle (store: LevelStore, refs: string[], options: WriteBundleOptions = {}): AsyncGenerator<Uint8Array, BundleSummary> {
  if (refs.length === 0) throw new UsageError('a bundle needs at least one image REF')
  const release = await holdRead(store.lock)
  try {
    const images = await resolveImages(store, refs)
    const envelope = options.signer != null ? makeEnvelope(images.map(i => i.cid), options.signer) : undefined
    const roots = [...(envelope != null ? [envelope.cid] : []), ...images.map(i => i.cid)]
    let blocks = 0
    let bytes = 0
    const counted = async function * (): AsyncGenerator<CarBlock> {
      for await (const block of bundleBlocks(store, images, envelope, options)) {
        blocks++
        yield block
      }
    }
    for await (const piece of carBytes(roots, counted())) {
      bytes += piece.length
      options.onProgress?.(bytes)
      yield piece
    }
    return {
      images: images.map(i => bundleImage(i.cid, i.manifest)),
      ...(options.signer != null ? { signedBy: keyFingerprint(options.signer.publicKey) } : {}),
      blocks,
      bytes
    }
  } finally {
    release()
  }
}

/** The images to bundle, each once, in the order first named; all must be available. */
async function resolveImages (store: LevelStore, refs: string[]): Promise<BundledImage[]> {
  const images: BundledImage[] = []
  const seen = new Set<string>()
  for (const ref of refs) {
    const record = await store.resolve(ref)
    if (record.state !== 'available') {
      throw new ImageNotAvailableError(`${record.ref} is ${record.state}${record.reason != null ? ` (${record.reason})` : ''}; only available images go into a bundle`)
    }
    if (seen.has(record.manifest)) continue
    seen.add(record.manifest)
    const manifest = await store.getManifest(record)
    // Encoding is deterministic, so these are the stored bytes; checked, since the CID is what is signed.
    const bytes = encodeManifest(manifest)
    const cid = manifestCid(bytes)
    if (!cid.equals(CID.parse(record.manifest))) throw new InvalidManifestError(`the manifest of ${record.ref} re-encodes to ${cid.toString()}, not ${record.manifest}`)
    images.push({ cid, manifest, bytes })
  }
  return images
}

async function * bundleBlocks (store: LevelStore, images: BundledImage[], envelope: CarBlock | undefined, options: AbortOptions): AsyncGenerator<CarBlock> {
  if (envelope != null) yield { cid: envelope.cid, bytes: envelope.bytes }
  for (const image of images) yield { cid: image.cid, bytes: image.bytes }
  const written = new Set<string>()
  let ahead: Promise<Array<{ cid: CID, bytes: Uint8Array }>> | undefined
  const read = (window: ChunkEntry[]): Promise<Array<{ cid: CID, bytes: Uint8Array }>> => {
    // getMany verifies every chunk against its digest: a damaged store never ships a bad block.
    const p = store.getMany(window.map(e => e.digest), options).then(chunks => chunks.map(c => ({ cid: chunkCidFromDigest(c.digest), bytes: c.bytes })))
    p.catch(() => {}) // observed when its turn comes
    return p
  }
  for (const window of windows(images, written)) {
    const next = read(window)
    if (ahead != null) yield * await ahead
    ahead = next
  }
  if (ahead != null) yield * await ahead
}

/** The chunks not yet written, image after image in manifest order, in read windows (one ahead of the writer). */
function windows (images: BundledImage[], written: Set<string>): Generator<ChunkEntry[]> {
  return readWindows((function * () {
    for (const image of images) {
      for (const e of chunkEntries(image.manifest)) {
        const key = Buffer.from(e.digest.buffer, e.digest.byteOffset, 32).toString('latin1')
        if (written.has(key)) continue
        written.add(key)
        yield e
      }
    }
  })())
}

/** Takes the read lock until the returned function is called (for holding it across a generator's yields). */
export async function holdRead (lock: RwLock): Promise<() => void> {
  return await new Promise(resolve => {
    void lock.read(async () => { await new Promise<void>(done => { resolve(done) }) })
  })
}
