import type { VerifiedChunk } from '../chunks/cid.js'
import { chunkCidFromDigest } from '../chunks/cid.js'
import type { Manifest } from '../chunks/manifest.js'
import { BundleInvalidError, BundleUntrustedError, DigestMismatchError } from '../errors.js'
import type { AbortOptions } from '../store/chunk-store.js'
import type { ImageRecord } from '../store/image-record.js'
import type { LevelStore } from '../store/level-store.js'
import { readImage } from '../store/read-image.js'
import { BundleReader } from './bundle-reader.js'
import { keyFingerprint } from './operator-key.js'

/** Chunks are written in batches of about this many bytes (as imports do, see src/store/ingest.ts). */
const BATCH_BYTES = 1024 * 1024
/** Digests asked of the store at once in the completeness check and the rollback. */
const LOOKUP_BATCH = 1024

export interface ImportBundleOptions extends AbortOptions {
  /** Raw Ed25519 public keys. When given, only a bundle signed by one of them is imported. */
  trust?: Uint8Array[]
  /** Called with the bundle bytes read so far. */
  onProgress?: (bytes: number) => void
}

export interface BundleImportResult {
  /** The images recorded, in the bundle's order. */
  images: ImageRecord[]
  /** The signer's key (base64url of the raw key), when the bundle is signed. */
  signedBy?: string
  blocks: number
  bytes: number
  /** Chunks (and their bytes) that were not in the store before. */
  newChunks: number
  newBytes: number
}

const keyOf = (digest: Uint8Array): string => Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')

/**
 * Imports a bundle from a stream, all of it or nothing. Chunks are verified and written as they
 * stream, which keeps memory bounded whatever the bundle's size; they are unreferenced until the
 * image records are committed, so a failure only has to delete the chunks this import added (see
 * {@link forgetChunks}). The order of checks:
 *  1. header, signature envelope and manifests (BundleReader.open); with `trust`, the signer: an
 *     unsigned or untrusted bundle is refused here, before anything is written;
 *  2. every chunk against its CID, as it is written;
 *  3. completeness: every chunk a manifest names is in the bundle or already in the store;
 *  4. each whole image against its sha256, in a second pass that reads the image from the store (a
 *     bundle holds shared chunks once, so images cannot all be hashed in stream order);
 *  5. all image records in one atomic batch.
 * The store's read lock is held throughout, so GC cannot sweep the new chunks before they are named.
 */
export async function importBundle (store: LevelStore, source: AsyncIterable<Uint8Array>, options: ImportBundleOptions = {}): Promise<BundleImportResult> {
  const added = new Set<string>()
  let committed = false
  try {
    return await store.lock.read(async () => {
      const reader = await BundleReader.open(source)
      try {
        if (options.trust != null) checkTrust(reader.signer, options.trust)
        const { newChunks, newBytes } = await writeChunks(store, reader, added, options)
        await checkComplete(store, reader, options)
        for (const { cid, manifest } of reader.images) await checkWholeImage(store, manifest, cid.toString(), options)
        const now = new Date().toISOString()
        const entries = []
        for (const { manifest } of reader.images) {
          const previous = await store.getRecord(Buffer.from(manifest.digest).toString('hex'))
          // A bundle's bytes came in on this node, like an import: `local` in the record's sources.
          const sources = { local: manifest.size, peers: 0, origin: 0 }
          entries.push({ manifest, record: { state: 'available' as const, pinned: previous?.pinned ?? false, created: previous?.created ?? now, lastAccess: now, hits: previous?.hits ?? 0, sources } })
        }
        const images = await store.commitImages(entries)
        committed = true
        return {
          images,
          ...(reader.signer != null ? { signedBy: keyFingerprint(reader.signer) } : {}),
          blocks: reader.blocks,
          bytes: reader.bytes,
          newChunks,
          newBytes
        }
      } finally {
        await reader.close()
      }
    })
  } catch (err) {
    // Best effort: what cannot be deleted now is unreferenced, and the next gc sweeps it.
    if (!committed && added.size > 0) await forgetChunks(store, added).catch(() => {})
    throw err
  }
}

function checkTrust (signer: Uint8Array | undefined, trust: Uint8Array[]): void {
  if (signer == null) throw new BundleUntrustedError('the bundle is unsigned, and a bundle signed by a trusted key is required (--trust); nothing was imported')
  const fingerprint = keyFingerprint(signer)
  if (!trust.some(k => keyFingerprint(k) === fingerprint)) {
    throw new BundleUntrustedError(`the bundle is signed by key ${fingerprint}, which is not trusted (trusted: ${trust.map(keyFingerprint).join(', ')}); nothing was imported`)
  }
}

/**
 * Writes the bundle's chunks that the store lacks, in batches, one batch in flight while the next is
 * read and verified. `added` gets every chunk written (before its write, so a failed write is undone
 * too).
 */
async function writeChunks (store: LevelStore, reader: BundleReader, added: Set<string>, options: ImportBundleOptions): Promise<{ newChunks: number, newBytes: number }> {
  let newChunks = 0
  let newBytes = 0
  let batch: VerifiedChunk[] = []
  let batchBytes = 0
  let writing: Promise<void> = Promise.resolve()
  const flush = async (): Promise<void> => {
    const chunks = batch
    batch = []
    batchBytes = 0
    // The bundle holds no chunk twice, so no chunk of this batch is in the one still being written.
    const present = await store.hasMany(chunks.map(c => c.digest), options)
    const fresh = chunks.filter((_, i) => !present[i])
    await writing
    for (const c of fresh) {
      added.add(keyOf(c.digest))
      newBytes += c.bytes.length
    }
    newChunks += fresh.length
    writing = store.putMany(fresh, options)
    writing.catch(() => {}) // observed by the next await of `writing`
  }
  try {
    for await (const chunk of reader.chunks(options)) {
      batch.push(chunk)
      batchBytes += chunk.bytes.length
      options.onProgress?.(reader.bytes)
      if (batchBytes >= BATCH_BYTES) await flush()
    }
    await flush()
  } finally {
    await writing.catch(() => {})
  }
  await writing
  return { newChunks, newBytes }
}

async function checkComplete (store: LevelStore, reader: BundleReader, options: AbortOptions): Promise<void> {
  let absent = 0
  let first: Uint8Array | undefined
  let lookup: Uint8Array[] = []
  const ask = async (): Promise<void> => {
    const present = await store.hasMany(lookup, options)
    present.forEach((p, i) => {
      if (p) return
      absent++
      first ??= lookup[i]
    })
    lookup = []
  }
  for (const digest of reader.missing()) {
    lookup.push(digest)
    if (lookup.length >= LOOKUP_BATCH) await ask()
  }
  await ask()
  if (absent > 0) {
    throw new BundleInvalidError(`the bundle is incomplete: ${absent} chunks that its images need are neither in it nor in the store (the first is ${chunkCidFromDigest(first!).toString()}); nothing was imported`)
  }
}

async function checkWholeImage (store: LevelStore, manifest: Manifest, cid: string, options: AbortOptions): Promise<void> {
  try {
    for await (const _ of readImage(store, manifest, options)) { /* readImage checks every chunk and, at the end, the digest */ }
  } catch (err) {
    if (err instanceof DigestMismatchError) throw new BundleInvalidError(`image ${cid} in the bundle does not add up to its digest: ${err.message}; nothing was imported`)
    throw err
  }
}

/**
 * Undoes a failed import's writes: deletes the chunks it added, except those that an image recorded
 * meanwhile names (another import or fetch may have found a chunk this one wrote, and relied on it).
 * Runs under the write lock, like GC, so every such image has been recorded by then.
 */
async function forgetChunks (store: LevelStore, added: Set<string>): Promise<void> {
  await store.lock.write(async () => {
    for (const record of await store.listImages()) {
      let manifest: Manifest
      try {
        manifest = await store.getManifest(record)
      } catch {
        continue
      }
      const d = manifest.chunkDigests
      for (let i = 0; i < d.length && added.size > 0; i += 32) added.delete(keyOf(d.subarray(i, i + 32)))
    }
    let doomed: Uint8Array[] = []
    for (const key of added) {
      doomed.push(Buffer.from(key, 'latin1'))
      if (doomed.length >= LOOKUP_BATCH) {
        await store.deleteMany(doomed)
        doomed = []
      }
    }
    await store.deleteMany(doomed)
  })
}
