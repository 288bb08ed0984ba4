import { verify } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { sha256 } from '../chunks/cid.js'
import { BundleInvalidError } from '../errors.js'
import { describe } from '../util/format.js'
import { publicKeyFromRaw, type BundleSigner } from './operator-key.js'

/** The version of the bundle format, and the key that marks a block as a signature envelope. */
export const BUNDLE_VERSION = 1

/**
 * The signature envelope of a signed bundle: the first root and the first block. It signs the list of
 * manifest CIDs and nothing else, and that is enough: a manifest CID is the hash of the manifest, the
 * manifest names every chunk by its sha256 and the whole image by its sha256, and every block of a
 * bundle is checked against its CID on import. Changing any byte of any image therefore changes a
 * signed CID, so the signature covers all content without hashing it twice.
 */
export interface SignatureEnvelope {
  images: CID[]
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array
  /** Ed25519 signature over {@link signedPayload}. */
  signature: Uint8Array
}

export interface EnvelopeBlock {
  cid: CID
  bytes: Uint8Array
  envelope: SignatureEnvelope
}

/**
 * What is signed: the dag-cbor of `{ imgswarmBundle: 1, images }`. The version key doubles as a
 * domain separator, so the signature cannot be replayed as a signature over anything else.
 */
export function signedPayload (images: CID[]): Uint8Array {
  return dagCbor.encode({ imgswarmBundle: BUNDLE_VERSION, images })
}

/** The CIDv1 (dag-cbor, sha2-256) of encoded bytes. */
export function dagCborCid (bytes: Uint8Array): CID {
  return CID.createV1(dagCbor.code, Digest.create(sha256Hasher.code, sha256(bytes)))
}

/** Signs the manifest CIDs of a bundle; the block goes first in the bundle and its CID is the first root. */
export function makeEnvelope (images: CID[], signer: BundleSigner): EnvelopeBlock {
  const envelope: SignatureEnvelope = { images, publicKey: signer.publicKey, signature: signer.sign(signedPayload(images)) }
  const bytes = dagCbor.encode({ imgswarmBundle: BUNDLE_VERSION, images, publicKey: envelope.publicKey, signature: envelope.signature })
  return { cid: dagCborCid(bytes), bytes, envelope }
}

/**
 * The envelope in a block, or undefined when the block is something else (a manifest: the bundle is
 * unsigned). A block that claims to be an envelope but is malformed, or whose signature does not
 * verify, is BundleInvalidError: a signature that fails is tampering, not a missing signature.
 */
export function readEnvelope (bytes: Uint8Array): SignatureEnvelope | undefined {
  let o: any
  try {
    o = dagCbor.decode(bytes)
  } catch {
    return undefined // not dag-cbor at all; the caller's manifest check says what is wrong
  }
  if (o == null || typeof o !== 'object' || !('imgswarmBundle' in o)) return undefined
  if (o.imgswarmBundle !== BUNDLE_VERSION) throw new BundleInvalidError(`bundle signature envelope has version ${describe(o.imgswarmBundle)}; this imgswarm reads version ${BUNDLE_VERSION}`)
  if (!Array.isArray(o.images) || o.images.length === 0 || !o.images.every((c: unknown) => CID.asCID(c) != null)) {
    throw new BundleInvalidError('bundle signature envelope has no list of image CIDs')
  }
  if (!(o.publicKey instanceof Uint8Array) || o.publicKey.length !== 32) throw new BundleInvalidError('bundle signature envelope has no 32-byte Ed25519 public key')
  if (!(o.signature instanceof Uint8Array) || o.signature.length !== 64) throw new BundleInvalidError('bundle signature envelope has no 64-byte Ed25519 signature')
  const envelope: SignatureEnvelope = { images: o.images, publicKey: o.publicKey, signature: o.signature }
  if (!verify(null, signedPayload(envelope.images), publicKeyFromRaw(envelope.publicKey), envelope.signature)) {
    throw new BundleInvalidError('the bundle\'s signature does not verify: the bundle was altered after it was signed')
  }
  return envelope
}
