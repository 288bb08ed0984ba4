import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { ChunkCorruptError, InvalidRefError } from '../errors.js'

/** sha256 with node:crypto: about ten times faster here than the WASM and JS implementations. */
export function sha256 (bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}

/** The CIDv1 (`raw` codec, sha2-256) that names a chunk whose sha256 is `digest`. */
export function chunkCidFromDigest (digest: Uint8Array): CID {
  return CID.createV1(raw.code, Digest.create(sha256Hasher.code, digest))
}

/** The 32-byte sha256 inside a chunk CID; throws for any other kind of CID. */
export function chunkDigestOf (cid: CID): Uint8Array {
  if (cid.version !== 1 || cid.code !== raw.code || cid.multihash.code !== sha256Hasher.code || cid.multihash.digest.length !== 32) {
    throw new InvalidRefError(`not a chunk CID (CIDv1, raw, sha2-256): ${cid.toString()}`)
  }
  return cid.multihash.digest
}

/**
 * A chunk whose bytes are known to hash to its digest. The only ways to make one are hashing bytes
 * ({@link chunkOf}) or checking them against an expected CID ({@link verifyChunk}), so every chunk
 * that reaches a store or a client has been verified exactly once, here.
 */
export interface VerifiedChunk {
  readonly digest: Uint8Array
  readonly bytes: Uint8Array
  readonly verified: true
}

/** Names bytes that we produced ourselves (an import): hashing them is the verification. */
export function chunkOf (bytes: Uint8Array): VerifiedChunk {
  return { digest: sha256(bytes), bytes, verified: true }
}

/** Checks bytes from anywhere untrusted (a peer, an origin, the disk) against the digest they claim. */
export function verifyChunk (expected: Uint8Array, bytes: Uint8Array): VerifiedChunk {
  const actual = sha256(bytes)
  if (!Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)) {
    throw new ChunkCorruptError(`chunk ${chunkCidFromDigest(expected).toString()} is corrupt: its ${bytes.length} bytes hash to ${Buffer.from(actual).toString('hex')}`, { digest: expected })
  }
  return { digest: expected, bytes, verified: true }
}

/**
 * {@link verifyChunk} that remembers the byte arrays it has verified, by identity: the same array
 * handed over again for the same digest is not hashed again. For the swarm simulator, whose in-memory
 * nodes pass one another the very arrays they hold (a corrupted copy is a new array, so it is still
 * caught); bytes from a socket or the disk are a new array every time, so there it would only cost.
 */
export class VerifiedArrays {
  private readonly seen = new WeakMap<Uint8Array, VerifiedChunk>()

  verify = (expected: Uint8Array, bytes: Uint8Array): VerifiedChunk => {
    const known = this.seen.get(bytes)
    if (known != null && Buffer.from(known.digest.buffer, known.digest.byteOffset, known.digest.byteLength).equals(expected)) return known
    const chunk = verifyChunk(expected, bytes)
    this.seen.set(bytes, chunk)
    return chunk
  }
}

export { CID }
