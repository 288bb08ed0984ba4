import type { CID } from 'multiformats/cid'
import type { VerifiedChunk } from '../chunks/cid.js'

/** Options every async store method takes. */
export interface AbortOptions {
  signal?: AbortSignal
}

/**
 * Content-addressed chunk bytes. Keys are chunk digests (the sha256 inside a CIDv1/raw/sha2-256), so a
 * chunk that several images share is stored once. Implementations pass test/suites/chunk-store.ts.
 */
export interface ChunkStore {
  /** Whether the chunk is stored. Cheap: does not read or verify its bytes. */
  has (digest: Uint8Array, options?: AbortOptions): Promise<boolean>

  /** {@link has} for many digests at once, in order. */
  hasMany (digests: Uint8Array[], options?: AbortOptions): Promise<boolean[]>

  /**
   * The chunk's bytes, verified against its digest.
   * @throws ChunkNotFoundError when it is not stored; ChunkCorruptError when the stored bytes are damaged
   */
  get (digest: Uint8Array, options?: AbortOptions): Promise<VerifiedChunk>

  /** {@link get} for many digests at once, in order; fails on the first missing or damaged chunk. */
  getMany (digests: Uint8Array[], options?: AbortOptions): Promise<VerifiedChunk[]>

  /** Stores verified chunks in one atomic write. Storing a chunk that is already there is harmless. */
  putMany (chunks: VerifiedChunk[], options?: AbortOptions): Promise<void>

  /** Removes chunks in one atomic write; absent ones are ignored. */
  deleteMany (digests: Uint8Array[], options?: AbortOptions): Promise<void>

  /** Every stored chunk's digest, in key order. */
  digests (options?: AbortOptions): AsyncIterable<Uint8Array>

  /** The CID form of a chunk digest, for messages and APIs. */
  cidOf (digest: Uint8Array): CID
}
