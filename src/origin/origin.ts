/**
 * The `Origin` interface: the object store that holds every published image, read only for what no
 * peer has. This is the contract a third-party backend implements (a module that default-exports an
 * {@link OriginFactory} and passes `test/suites/origin.ts`); the built-in backends are `file:`,
 * `http(s):` and `s3:`.
 *
 * Object layout, the same on every backend (`<prefix>` is the directory, base URL or key prefix):
 *
 * ```
 * <prefix>/sha256/<64 hex>            the image bytes
 * <prefix>/sha256/<64 hex>.manifest   its manifest (dag-cbor), optional
 * <prefix>/sha256/<64 hex>.profile    its boot profile (src/chunks/boot-profile.ts), optional
 * ```
 */
import { MAX_PROFILE_ENCODED } from '../chunks/boot-profile.js'
import { MAX_MANIFEST_BYTES } from '../chunks/manifest.js'

/** Options every async origin method takes. */
export interface OriginCallOptions {
  /** Aborts the call; it then rejects (or the read throws) with the signal's reason, an `AbortError`. */
  signal?: AbortSignal
}

/** Which byte range {@link Origin.read} returns. */
export interface OriginReadOptions extends OriginCallOptions {
  /** First byte to return. Default 0. */
  offset?: number
  /** How many bytes to return. Default: to the end of the image. A range past the end is an `OriginRangeError`. */
  length?: number
}

/** Options of {@link Origin.write}. */
export interface OriginWriteOptions extends OriginCallOptions {
  /** The image's size, when known: lets a backend plan the upload (S3 part sizes). */
  size?: number
}

/** What a backend can do. Callers branch on these, never on the backend's name or scheme. */
export interface OriginCapabilities {
  /**
   * Whether a ranged {@link Origin.read} costs about the bytes asked for. When `false`, ranged reads
   * still work but download the image from its start, so a reader should take the whole image in
   * one read. A backend may turn this from `true` to `false` once it learns that its server ignores
   * `Range`.
   */
  readonly rangeRead: boolean
  /** Whether the origin may hold manifests. When `false`, {@link Origin.readManifest} always answers `undefined`. */
  readonly manifests: boolean
  /** Whether {@link Origin.write} and {@link Origin.writeManifest} exist. */
  readonly write: boolean
}

/** What {@link Origin.stat} knows about a stored image. */
export interface OriginStat {
  /** Size in bytes. */
  size: number
}

/**
 * An object store holding images by their sha256. Every `hex` argument is the 64 lower-case hex
 * digits of the image digest (anything else is an `InvalidRefError`).
 *
 * Errors: a missing image is an `OriginNotFoundError` from every backend (ENOENT, HTTP 404 and S3
 * `NoSuchKey` alike); refused credentials an `OriginAccessDeniedError`; a request that outlives the
 * timeout an `OriginTimeoutError`; anything else an `OriginError` with the driver's error as `cause`.
 * Transient failures are retried with backoff, a bounded number of times, before they are thrown.
 */
export interface Origin {
  /** The origin's location for messages and logs, without credentials. */
  readonly url: string

  readonly capabilities: OriginCapabilities

  /** The image's size, or `undefined` when the origin does not hold it. */
  stat (hex: string, options?: OriginCallOptions): Promise<OriginStat | undefined>

  /**
   * The image's bytes, whole or the exact range asked for, in pieces of any size. Nothing is
   * requested until the iterable is iterated. A transfer that breaks mid-way is resumed from the
   * byte where it stopped (bounded retries with backoff), so the caller sees one unbroken stream.
   * @throws OriginNotFoundError when the image is missing; OriginRangeError when the range ends past the image
   */
  read (hex: string, options?: OriginReadOptions): AsyncIterable<Uint8Array>

  /**
   * The image's manifest bytes as stored (not decoded or verified: the caller checks them), or
   * `undefined` when there is none.
   * @throws InvalidManifestError when the object is larger than the limit (default {@link MAX_MANIFEST_BYTES})
   */
  readManifest (hex: string, options?: OriginCallOptions): Promise<Uint8Array | undefined>

  /**
   * Stores an image from `source`. The bytes are hashed on the way; the image becomes visible under
   * `hex` only once all of it is stored and its sha256 matched, so readers never see a partial or
   * wrong image. Memory use is bounded whatever the image size. Present when `capabilities.write`.
   * @throws DigestMismatchError when the bytes do not hash to `hex` (nothing is stored)
   */
  write? (hex: string, source: AsyncIterable<Uint8Array>, options?: OriginWriteOptions): Promise<OriginStat>

  /** Stores the manifest of image `hex`, visible only once complete. Present when `capabilities.write`. */
  writeManifest? (hex: string, bytes: Uint8Array, options?: OriginCallOptions): Promise<void>

  /**
   * The image's boot profile as stored (unchecked: a hint the caller checks against its manifest),
   * or `undefined` when there is none. Optional: a backend without it has no profiles.
   * @throws InvalidManifestError when the object is larger than {@link MAX_PROFILE_ENCODED}
   */
  readProfile? (hex: string, options?: OriginCallOptions): Promise<Uint8Array | undefined>

  /** Stores the boot profile of image `hex`, visible only once complete. Optional, and only where `capabilities.write`. */
  writeProfile? (hex: string, bytes: Uint8Array, options?: OriginCallOptions): Promise<void>

  /** Releases connections and handles. The origin is not used afterwards. */
  close? (): Promise<void>
}

/**
 * What a plug-in module default-exports: builds an origin from the string the operator configured
 * (the module path plus any `?query`) and the options the program passed.
 */
export type OriginFactory = (url: string, options: Record<string, unknown>) => Origin | Promise<Origin>

/** Manifests larger than this are refused: the decoder's own bound (64 MiB, ~1.8 M chunks). */
export { MAX_MANIFEST_BYTES }
/** Boot profiles larger than this are refused. */
export { MAX_PROFILE_ENCODED }

/** Settings that every built-in backend takes, from options or from URL parameters of the same name. */
export interface OriginTuning {
  /**
   * Milliseconds a request may wait for its answer, and a transfer may go without receiving a byte,
   * before it is abandoned (and retried). Default 30000.
   */
  timeoutMs?: number
  /** How many times a failed request, or a transfer that made no progress, is tried again. Default 5. */
  retries?: number
  /** First backoff delay before a retry, doubling each time (with jitter, at most 10 s). Default 200. */
  retryDelayMs?: number
  /** Largest manifest accepted by {@link Origin.readManifest}. Default {@link MAX_MANIFEST_BYTES}. */
  maxManifestBytes?: number
}

export const DEFAULT_TUNING: Required<OriginTuning> = {
  timeoutMs: 30_000,
  retries: 5,
  retryDelayMs: 200,
  maxManifestBytes: MAX_MANIFEST_BYTES
}

const HEX64 = /^[0-9a-f]{64}$/

/** The object name of an image under a prefix (`''` for none): `<prefix>/sha256/<hex>`. */
export function imageKey (prefix: string, hex: string): string {
  return `${prefix === '' ? '' : `${prefix}/`}sha256/${hex}`
}

/** The object name of an image's manifest: `<prefix>/sha256/<hex>.manifest`. */
export function manifestKey (prefix: string, hex: string): string {
  return `${imageKey(prefix, hex)}.manifest`
}

/** The object name of an image's boot profile: `<prefix>/sha256/<hex>.profile`. */
export function profileKey (prefix: string, hex: string): string {
  return `${imageKey(prefix, hex)}.profile`
}

/** Whether `hex` is 64 lower-case hex digits, the only form origins accept. */
export function isImageHex (hex: string): boolean {
  return HEX64.test(hex)
}
