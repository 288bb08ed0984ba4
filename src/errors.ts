/**
 * Every error imgswarm raises on purpose. Each condition has its own class with a stable `name` and
 * `code`; messages may change, codes do not. Every code is listed in docs/errors.md (a test checks it).
 * Driver errors (LevelDB, fs) are wrapped and kept as `cause`.
 */
export class ImgswarmError extends Error {
  readonly code: string

  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** A command line, flag or argument that cannot be understood. */
export class UsageError extends ImgswarmError {
  static readonly code = 'IMGSWARM_USAGE'
  override name = 'UsageError'
  constructor (message: string) { super(UsageError.code, message) }
}

/** A REF that is neither `sha256:<64 hex>`, a hex prefix of at least 12 digits, nor a manifest CID. */
export class InvalidRefError extends ImgswarmError {
  static readonly code = 'IMGSWARM_INVALID_REF'
  override name = 'InvalidRefError'
  constructor (message: string) { super(InvalidRefError.code, message) }
}

/** No stored image matches the REF. */
export class ImageNotFoundError extends ImgswarmError {
  static readonly code = 'IMGSWARM_IMAGE_NOT_FOUND'
  override name = 'ImageNotFoundError'
  constructor (message: string) { super(ImageNotFoundError.code, message) }
}

/** A hex prefix that matches more than one stored image. */
export class AmbiguousRefError extends ImgswarmError {
  static readonly code = 'IMGSWARM_AMBIGUOUS_REF'
  override name = 'AmbiguousRefError'
  constructor (message: string) { super(AmbiguousRefError.code, message) }
}

/** The image is known but not `available` (still fetching, or failed). */
export class ImageNotAvailableError extends ImgswarmError {
  static readonly code = 'IMGSWARM_IMAGE_NOT_AVAILABLE'
  override name = 'ImageNotAvailableError'
  constructor (message: string) { super(ImageNotAvailableError.code, message) }
}

/** The image is pinned (or otherwise protected) and the operation would remove it. */
export class ImageProtectedError extends ImgswarmError {
  static readonly code = 'IMGSWARM_IMAGE_PROTECTED'
  override name = 'ImageProtectedError'
  constructor (message: string) { super(ImageProtectedError.code, message) }
}

/** A chunk that a manifest names is not in the store. */
export class ChunkNotFoundError extends ImgswarmError {
  static readonly code = 'IMGSWARM_CHUNK_NOT_FOUND'
  override name = 'ChunkNotFoundError'
  constructor (message: string, options?: { cause?: unknown }) { super(ChunkNotFoundError.code, message, options) }
}

/** Bytes that do not hash to the CID they were stored or sent under. */
export class ChunkCorruptError extends ImgswarmError {
  static readonly code = 'IMGSWARM_CHUNK_CORRUPT'
  override name = 'ChunkCorruptError'
  /** The digest the bytes should have hashed to. */
  readonly digest?: Uint8Array
  constructor (message: string, options?: { cause?: unknown, digest?: Uint8Array }) {
    super(ChunkCorruptError.code, message, options)
    this.digest = options?.digest
  }
}

/** The assembled image does not hash to the digest it was asked for. */
export class DigestMismatchError extends ImgswarmError {
  static readonly code = 'IMGSWARM_DIGEST_MISMATCH'
  override name = 'DigestMismatchError'
  constructor (message: string) { super(DigestMismatchError.code, message) }
}

/** A manifest that cannot be decoded, has the wrong CID, or contradicts itself. */
export class InvalidManifestError extends ImgswarmError {
  static readonly code = 'IMGSWARM_INVALID_MANIFEST'
  override name = 'InvalidManifestError'
  constructor (message: string, options?: { cause?: unknown }) { super(InvalidManifestError.code, message, options) }
}

/** The data dir is open in another imgswarm process (LevelDB's LOCK is held). */
export class StoreLockedError extends ImgswarmError {
  static readonly code = 'IMGSWARM_STORE_LOCKED'
  override name = 'StoreLockedError'
  constructor (message: string, options?: { cause?: unknown }) { super(StoreLockedError.code, message, options) }
}

/** The data dir was written by an incompatible store format version. */
export class StoreVersionError extends ImgswarmError {
  static readonly code = 'IMGSWARM_STORE_VERSION'
  override name = 'StoreVersionError'
  constructor (message: string) { super(StoreVersionError.code, message) }
}

/** LevelDB reports its files damaged. */
export class StoreCorruptError extends ImgswarmError {
  static readonly code = 'IMGSWARM_STORE_CORRUPT'
  override name = 'StoreCorruptError'
  constructor (message: string, options?: { cause?: unknown }) { super(StoreCorruptError.code, message, options) }
}

/** The disk under the data dir is full. Nothing stored before is lost; free space and retry. */
export class StoreFullError extends ImgswarmError {
  static readonly code = 'IMGSWARM_STORE_FULL'
  override name = 'StoreFullError'
  constructor (message: string, options?: { cause?: unknown }) { super(StoreFullError.code, message, options) }
}

/**
 * An image does not fit under the daemon's size cap (`--max-size`) even after evicting every image
 * that may be evicted; the fetch fails before it writes anything.
 */
export class CacheFullError extends ImgswarmError {
  static readonly code = 'IMGSWARM_CACHE_FULL'
  override name = 'CacheFullError'
  constructor (message: string) { super(CacheFullError.code, message) }
}

/** Any other failure of the store's files. */
export class StoreIoError extends ImgswarmError {
  static readonly code = 'IMGSWARM_STORE_IO'
  override name = 'StoreIoError'
  constructor (message: string, options?: { cause?: unknown }) { super(StoreIoError.code, message, options) }
}

/** An input file that is missing, unreadable or not a regular file or stream. */
export class InputError extends ImgswarmError {
  static readonly code = 'IMGSWARM_INPUT'
  override name = 'InputError'
  constructor (message: string, options?: { cause?: unknown }) { super(InputError.code, message, options) }
}

/** An output path that cannot be written (missing directory, no permission, disk full). */
export class OutputError extends ImgswarmError {
  static readonly code = 'IMGSWARM_OUTPUT'
  override name = 'OutputError'
  constructor (message: string, options?: { cause?: unknown }) { super(OutputError.code, message, options) }
}

/** A peer broke the wire protocol: an oversized or malformed frame, a message that does not decode, a frame out of turn. */
export class ProtocolError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PROTOCOL'
  override name = 'ProtocolError'
  constructor (message: string, options?: { cause?: unknown }) { super(ProtocolError.code, message, options) }
}

/** A peer asked this node to keep or do more than its share: DHT records past the per-peer or total bound. */
export class PeerLimitError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PEER_LIMIT'
  override name = 'PeerLimitError'
  constructor (message: string, options?: { cause?: unknown }) { super(PeerLimitError.code, message, options) }
}

/** A peer did not send the next frame, or did not accept ours, within the time allowed. */
export class PeerTimeoutError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PEER_TIMEOUT'
  override name = 'PeerTimeoutError'
  constructor (message: string, options?: { cause?: unknown }) { super(PeerTimeoutError.code, message, options) }
}

/** A stream to a peer was reset or cut off before the exchange finished (by the peer, or because the connection died). */
export class PeerStreamError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PEER_STREAM'
  override name = 'PeerStreamError'
  constructor (message: string, options?: { cause?: unknown }) { super(PeerStreamError.code, message, options) }
}

/** A peer could not be dialled: no address answered, the connection was refused (allow-list, wrong swarm key) or timed out. */
export class PeerUnreachableError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PEER_UNREACHABLE'
  override name = 'PeerUnreachableError'
  constructor (message: string, options?: { cause?: unknown }) { super(PeerUnreachableError.code, message, options) }
}

/** A peer is reachable but does not speak the protocol (or the protocol version) that was asked for. */
export class ProtocolUnsupportedError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PROTOCOL_UNSUPPORTED'
  override name = 'ProtocolUnsupportedError'
  constructor (message: string, options?: { cause?: unknown }) { super(ProtocolUnsupportedError.code, message, options) }
}

/** A peer answered a request with an error of its own (it is busy, it failed, or it found the request invalid). */
export class RemoteError extends ImgswarmError {
  static readonly code = 'IMGSWARM_REMOTE'
  override name = 'RemoteError'
  /** The peer's reason, as sent on the wire: `busy`, `internal` or `bad-request`. */
  readonly reason: string
  constructor (message: string, reason: string) {
    super(RemoteError.code, message)
    this.reason = reason
  }
}

/** The node's key file in the data dir cannot be read, written, or does not hold an Ed25519 private key. */
export class PeerIdentityError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PEER_IDENTITY'
  override name = 'PeerIdentityError'
  constructor (message: string, options?: { cause?: unknown }) { super(PeerIdentityError.code, message, options) }
}

/** Peer settings that cannot work: a malformed listen or bootstrap address, swarm key or allowed peer ID. */
export class PeerConfigError extends ImgswarmError {
  static readonly code = 'IMGSWARM_PEER_CONFIG'
  override name = 'PeerConfigError'
  constructor (message: string, options?: { cause?: unknown }) { super(PeerConfigError.code, message, options) }
}

/** An origin failed for a reason no other class names (server error, broken connection, unexpected answer); `cause` holds the driver's error. */
export class OriginError extends ImgswarmError {
  static readonly code = 'IMGSWARM_ORIGIN'
  override name = 'OriginError'
  /** Whether trying again may succeed (a 5xx answer, a broken connection), as opposed to an answer that will repeat. */
  readonly retryable: boolean
  constructor (message: string, options?: { cause?: unknown, retryable?: boolean }) {
    super(OriginError.code, message, options)
    this.retryable = options?.retryable ?? false
  }
}

/** The origin does not hold the image or object (ENOENT, HTTP 404, S3 NoSuchKey alike). */
export class OriginNotFoundError extends ImgswarmError {
  static readonly code = 'IMGSWARM_ORIGIN_NOT_FOUND'
  override name = 'OriginNotFoundError'
  constructor (message: string, options?: { cause?: unknown }) { super(OriginNotFoundError.code, message, options) }
}

/** A byte range that ends past the end of the object at the origin. */
export class OriginRangeError extends ImgswarmError {
  static readonly code = 'IMGSWARM_ORIGIN_RANGE'
  override name = 'OriginRangeError'
  constructor (message: string, options?: { cause?: unknown }) { super(OriginRangeError.code, message, options) }
}

/** The origin refused the request: missing or wrong credentials, or no permission (HTTP 401/403, S3 AccessDenied, EACCES). */
export class OriginAccessDeniedError extends ImgswarmError {
  static readonly code = 'IMGSWARM_ORIGIN_DENIED'
  override name = 'OriginAccessDeniedError'
  constructor (message: string, options?: { cause?: unknown }) { super(OriginAccessDeniedError.code, message, options) }
}

/** The origin did not answer, or stopped sending, within the timeout, every time it was tried. */
export class OriginTimeoutError extends ImgswarmError {
  static readonly code = 'IMGSWARM_ORIGIN_TIMEOUT'
  override name = 'OriginTimeoutError'
  constructor (message: string, options?: { cause?: unknown }) { super(OriginTimeoutError.code, message, options) }
}

/** An origin URL, parameter or plug-in module that cannot be used (unknown scheme or parameter, unreadable CA file, a module without a factory). */
export class OriginConfigError extends ImgswarmError {
  static readonly code = 'IMGSWARM_ORIGIN_CONFIG'
  override name = 'OriginConfigError'
  constructor (message: string, options?: { cause?: unknown }) { super(OriginConfigError.code, message, options) }
}

/** No peer holds the chunks an image still lacks and no origin is configured (or reachable) for them. */
export class NoSourceError extends ImgswarmError {
  static readonly code = 'IMGSWARM_NO_SOURCE'
  override name = 'NoSourceError'
  constructor (message: string, options?: { cause?: unknown }) { super(NoSourceError.code, message, options) }
}

/** A daemon's API answered something a client cannot use (not JSON, a transfer cut short). */
export class ApiError extends ImgswarmError {
  static readonly code = 'IMGSWARM_API'
  override name = 'ApiError'
  constructor (message: string, options?: { cause?: unknown }) { super(ApiError.code, message, options) }
}

/** No daemon answers at the API address (none runs, or the address is wrong). */
export class ApiUnreachableError extends ImgswarmError {
  static readonly code = 'IMGSWARM_API_UNREACHABLE'
  override name = 'ApiUnreachableError'
  constructor (message: string, options?: { cause?: unknown }) { super(ApiUnreachableError.code, message, options) }
}

/** The command was stopped by SIGINT or SIGTERM; nothing half-done was recorded. */
export class InterruptedError extends ImgswarmError {
  static readonly code = 'IMGSWARM_INTERRUPTED'
  override name = 'InterruptedError'
  constructor (message = 'interrupted') { super(InterruptedError.code, message) }
}

/** A test cluster could not be made, read or removed (`imgswarm cluster`). */
export class ClusterError extends ImgswarmError {
  static readonly code = 'IMGSWARM_CLUSTER'
  override name = 'ClusterError'
  constructor (message: string, options?: { cause?: unknown }) { super(ClusterError.code, message, options) }
}

// ---- Signed bundles (issue 5). Kept together, after the others, so that the features that add errors in
// parallel each touch their own block; they sit before `errorClasses` because a class cannot be listed
// before it is defined.

/** A bundle (CAR file) that is malformed, damaged, tampered with, incomplete, or holds blocks it should not. Nothing was imported. */
export class BundleInvalidError extends ImgswarmError {
  static readonly code = 'IMGSWARM_BUNDLE_INVALID'
  override name = 'BundleInvalidError'
  constructor (message: string, options?: { cause?: unknown }) { super(BundleInvalidError.code, message, options) }
}

/** `--trust` was given and the bundle is unsigned or signed by a key not in the trust list. Nothing was imported. */
export class BundleUntrustedError extends ImgswarmError {
  static readonly code = 'IMGSWARM_BUNDLE_UNTRUSTED'
  override name = 'BundleUntrustedError'
  constructor (message: string) { super(BundleUntrustedError.code, message) }
}

/** An operator key file that cannot be read or written, or does not hold an Ed25519 key of the expected kind. */
export class OperatorKeyError extends ImgswarmError {
  static readonly code = 'IMGSWARM_OPERATOR_KEY'
  override name = 'OperatorKeyError'
  constructor (message: string, options?: { cause?: unknown }) { super(OperatorKeyError.code, message, options) }
}

// ---- Access to the local API.

/** The API caller has no grant: not root, the daemon's user or a member of its API group, and no token. */
export class UnauthorizedError extends ImgswarmError {
  static readonly code = 'IMGSWARM_UNAUTHORIZED'
  override name = 'UnauthorizedError'
  constructor (message: string) { super(UnauthorizedError.code, message) }
}

/** The caller is known but may not do this: a wrong token, a file outside the import directories, an origin the daemon is not configured with. */
export class ForbiddenError extends ImgswarmError {
  static readonly code = 'IMGSWARM_FORBIDDEN'
  override name = 'ForbiddenError'
  constructor (message: string) { super(ForbiddenError.code, message) }
}

/** The daemon is still starting: its API answers before every part behind it is up. Retry shortly. */
export class DaemonStartingError extends ImgswarmError {
  static readonly code = 'IMGSWARM_STARTING'
  override name = 'DaemonStartingError'
  constructor (message = 'the daemon is still starting; retry in a moment') { super(DaemonStartingError.code, message) }
}

/** Every error class, for the documentation test and for programs that map codes. */
export const errorClasses = [
  UsageError, InvalidRefError, ImageNotFoundError, AmbiguousRefError, ImageNotAvailableError,
  ImageProtectedError, ChunkNotFoundError, ChunkCorruptError, DigestMismatchError, InvalidManifestError,
  StoreLockedError, StoreVersionError, StoreCorruptError, StoreFullError, CacheFullError, StoreIoError, InputError, OutputError,
  ProtocolError, PeerLimitError, PeerTimeoutError, PeerStreamError, PeerUnreachableError, ProtocolUnsupportedError, RemoteError,
  PeerIdentityError, PeerConfigError,
  OriginError, OriginNotFoundError, OriginRangeError, OriginAccessDeniedError, OriginTimeoutError, OriginConfigError,
  NoSourceError, ApiError, ApiUnreachableError, InterruptedError, ClusterError,
  BundleInvalidError, BundleUntrustedError, OperatorKeyError, UnauthorizedError, ForbiddenError, DaemonStartingError
] as const

/** Whether `err` carries the Node.js system error code `code` (ENOENT, ENOSPC, …) on itself or its causes. */
export function hasSystemCode (err: unknown, code: string): boolean {
  for (let e: unknown = err, depth = 0; e != null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === code) return true
    if (e instanceof Error && e.message.includes(code)) return true
  }
  return false
}
