import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { addAbortSignal, type Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, GetObjectCommand,
  HeadObjectCommand, PutObjectCommand, S3Client, UploadPartCommand, type GetObjectCommandOutput
} from '@aws-sdk/client-s3'
import {
  DigestMismatchError, ImgswarmError, InvalidManifestError, OriginAccessDeniedError, OriginConfigError, OriginError,
  OriginNotFoundError, OriginRangeError
} from '../errors.js'
import {
  DEFAULT_TUNING, imageKey, manifestKey, MAX_PROFILE_ENCODED, profileKey, type Origin, type OriginCallOptions, type OriginCapabilities,
  type OriginReadOptions, type OriginStat, type OriginTuning, type OriginWriteOptions
} from './origin.js'
import { parseContentRange } from './content-range.js'
import { TUNING_PARAMS, checkHex, defined, readParams, redact } from './params.js'
import { release } from './release-response.js'
import { resumableRead, type OpenedRange } from './resumable-read.js'
import { withRetries, type RetryOptions } from './retry.js'

/** Options of an `s3:` origin; URL parameters of the same names (but `credentials`) are read too. */
export interface S3OriginOptions extends OriginTuning {
  /** An S3-compatible server (Ceph RGW, MinIO, Swift's s3api …), e.g. `http://127.0.0.1:8080`. Default: AWS. */
  endpoint?: string
  /** Region for request signing. Default: `AWS_REGION` or the AWS config file; `us-east-1` with an `endpoint`. */
  region?: string
  /** Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`. Default: true with an `endpoint`, false for AWS. */
  forcePathStyle?: boolean
  /** Credentials; default the AWS SDK chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` and ~/.aws, instance roles …). */
  credentials?: { accessKeyId: string, secretAccessKey: string, sessionToken?: string }
  /** Size of the parts of a multipart upload; images up to this size go in one PUT. Default 16 MiB, at least 5 MiB. */
  partSize?: number
  /** Parts uploaded at once. Memory use of a write is about `(uploadConcurrency + 1) × partSize`. Default 2. */
  uploadConcurrency?: number
}

const PARAMS = { ...TUNING_PARAMS, endpoint: 'string', region: 'string', forcePathStyle: 'boolean', partSize: 'number', uploadConcurrency: 'number' } as const

const MIB = 1024 * 1024
/** S3's smallest part (but the last). */
const MIN_PART = 5 * MIB
/** Fewer parts than any S3 server allows (AWS 10 000, Swift 1 000): part sizes double every quarter of this. */
const MAX_PARTS = 1000

const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE'])
const TRANSIENT_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeTooSkewed', 'SlowDown', 'Throttling', 'ThrottlingException', 'InternalError', 'ServiceUnavailable'])
const DENIED_NAMES = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'CredentialsProviderError', 'AllAccessDisabled'])

/**
 * An origin in an S3 bucket, on AWS or any S3-compatible server: `s3://bucket/prefix?endpoint=…`
 * holds `prefix/sha256/<hex>` and `prefix/sha256/<hex>.manifest`. Ranged reads use `Range`.
 * Writable: an image goes up in one PUT when it fits in a part, else as a multipart upload whose
 * parts are cut as the bytes arrive (bounded memory), completed only once the digest matched, and
 * aborted on any failure; either way S3 shows the object only when it is whole.
 * Checksums are sent and checked only when S3 requires them, so that S3-compatible servers which
 * refuse the SDK's `aws-chunked` uploads work.
 *
 * @example
 * const origin = s3Origin('s3://images/prod?endpoint=http://rgw.internal:8080&region=default')
 */
export function s3Origin (url: string | URL, options: S3OriginOptions = {}): Origin {
  let u: URL
  try {
    u = new URL(url)
  } catch (err) {
    throw new OriginConfigError(`not a URL: ${String(url)}`, { cause: err })
  }
  if (u.protocol !== 's3:') throw new OriginConfigError(`not an s3: URL: ${redact(u)}`)
  if (u.username !== '' || u.password !== '') throw new OriginConfigError(`origin ${redact(u)}: credentials come from the AWS environment or options, not the URL`)
  const bucket = u.hostname
  if (bucket === '') throw new OriginConfigError(`origin ${u.href}: no bucket (s3://bucket/prefix)`)
  const params = readParams(u, PARAMS)
  const o = { ...params, ...defined(options) }
  const partSize = o.partSize ?? 16 * MIB
  if (partSize < MIN_PART) throw new OriginConfigError(`origin ${redact(u)}: partSize ${partSize} is below S3's minimum of ${MIN_PART}`)
  if (o.endpoint !== undefined) {
    try {
      void new URL(o.endpoint)
    } catch (err) {
      throw new OriginConfigError(`origin ${redact(u)}: endpoint "${o.endpoint}" is not a URL`, { cause: err })
    }
  }
  let prefix: string
  try {
    prefix = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '')
  } catch (err) {
    throw new OriginConfigError(`origin ${redact(u)}: the prefix has a malformed %-escape`, { cause: err })
  }
  const tuning = { ...DEFAULT_TUNING, ...defined({ timeoutMs: o.timeoutMs, retries: o.retries, retryDelayMs: o.retryDelayMs, maxManifestBytes: o.maxManifestBytes }) }
  let client: S3Client
  try {
    client = newS3Client(o, tuning)
  } catch (err) {
    // The SDK checks some settings as the client is made (an empty region, say) and throws a plain Error.
    throw new OriginConfigError(`origin ${redact(u)}: ${(err as Error).message}`, { cause: err })
  }
  return new S3Origin(client, bucket, prefix, `s3://${bucket}${prefix === '' ? '' : `/${prefix}`}`, tuning, partSize, Math.max(1, o.uploadConcurrency ?? 2))
}

function newS3Client (o: S3OriginOptions, tuning: Required<OriginTuning>): S3Client {
  return new S3Client({
    endpoint: o.endpoint,
    region: o.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (o.endpoint !== undefined ? 'us-east-1' : undefined),
    forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
    credentials: o.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // One retry policy for the whole origin: ours, which also resumes broken downloads.
    maxAttempts: 1,
    requestHandler: { connectionTimeout: tuning.timeoutMs, socketTimeout: tuning.timeoutMs }
  })
}

interface Part { PartNumber: number, ETag: string }

class S3Origin implements Origin {
  readonly capabilities: OriginCapabilities = { rangeRead: true, manifests: true, write: true }

  constructor (private readonly client: S3Client, private readonly bucket: string, private readonly prefix: string,
    readonly url: string, private readonly tuning: Required<OriginTuning>, private readonly partSize: number,
    private readonly concurrency: number) {}

  async stat (hex: string, options: OriginCallOptions = {}): Promise<OriginStat | undefined> {
    checkHex(hex)
    const key = imageKey(this.prefix, hex)
    return await withRetries(async signal => await this.head(key, signal), this.retry(key, options.signal))
  }

  read (hex: string, options: OriginReadOptions = {}): AsyncIterable<Uint8Array> {
    checkHex(hex)
    const key = imageKey(this.prefix, hex)
    return resumableRead({
      what: this.what(key),
      open: async (start, end, signal) => await this.openRange(key, start, end, signal),
      stat: async signal => await this.head(key, signal),
      mapError: err => mapS3Error(err, this.what(key))
    }, { ...this.tuning, ...options })
  }

  async readManifest (hex: string, options: OriginCallOptions = {}): Promise<Uint8Array | undefined> {
    checkHex(hex)
    return await this.readSmall(manifestKey(this.prefix, hex), 'manifest', this.tuning.maxManifestBytes, options)
  }

  async readProfile (hex: string, options: OriginCallOptions = {}): Promise<Uint8Array | undefined> {
    checkHex(hex)
    return await this.readSmall(profileKey(this.prefix, hex), 'boot profile', MAX_PROFILE_ENCODED, options)
  }

  /** A small object (manifest, profile) whole, or undefined when the bucket has none. */
  private async readSmall (key: string, what: string, max: number, options: OriginCallOptions): Promise<Uint8Array | undefined> {
    return await withRetries(async signal => {
      let res: GetObjectCommandOutput
      try {
        res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal })
      } catch (err) {
        if (mapS3Error(err, '') instanceof OriginNotFoundError) return undefined
        throw err
      }
      const body = res.Body as Readable
      if ((res.ContentLength ?? 0) > max) {
        body.destroy()
        throw new InvalidManifestError(`${this.what(key)}: ${what} of ${res.ContentLength} bytes is larger than the ${max} allowed`)
      }
      addAbortSignal(signal, body)
      const pieces: Buffer[] = []
      let size = 0
      for await (const piece of body as AsyncIterable<Buffer>) {
        size += piece.length
        if (size > max) {
          body.destroy()
          throw new InvalidManifestError(`${this.what(key)}: ${what} larger than the ${max} bytes allowed`)
        }
        pieces.push(piece)
      }
      if (res.ContentLength !== undefined && size !== res.ContentLength) {
        throw new OriginError(`${this.what(key)}: ${what} transfer ended after ${size} of ${res.ContentLength} bytes`, { retryable: true })
      }
      const all = Buffer.concat(pieces)
      return new Uint8Array(all.buffer, all.byteOffset, all.length)
    }, this.retry(key, options.signal))
  }

  async write (hex: string, source: AsyncIterable<Uint8Array>, options: OriginWriteOptions = {}): Promise<OriginStat> {
    checkHex(hex)
    const key = imageKey(this.prefix, hex)
    const signal = options.signal
    signal?.throwIfAborted()
    const hash = createHash('sha256')
    let size = 0
    let pending: Uint8Array[] = []
    let buffered = 0
    let uploadId: string | undefined
    const parts: Part[] = []
    let nextPart = 1
    const inFlight = new Set<Promise<void>>()
    // With the size known, one part size that fits in MAX_PARTS; without, sizes that grow.
    const fixedPart = options.size === undefined ? undefined : Math.max(this.partSize, Math.ceil(options.size / MAX_PARTS / MIB) * MIB)
    const partSizeFor = (n: number): number => fixedPart ?? this.partSizeFor(n)
    // Set by a part upload that failed for good; read by the loop (an object, so that the type checker sees it change).
    const failed: { err?: unknown, yes: boolean } = { yes: false }

    const startPart = (bytes: Buffer): void => {
      const p = this.uploadPart(key, uploadId as string, nextPart++, bytes, signal)
        .then(part => { parts.push(part) }, err => { if (!failed.yes) Object.assign(failed, { yes: true, err }) })
        .finally(() => inFlight.delete(p))
      inFlight.add(p)
    }
    const take = (n: number): Buffer => {
      const all = Buffer.concat(pending)
      pending = n < all.length ? [all.subarray(n)] : []
      buffered = all.length - n
      return all.subarray(0, n)
    }

    try {
      for await (const piece of source) {
        signal?.throwIfAborted()
        if (failed.yes) throw failed.err
        hash.update(piece)
        size += piece.length
        pending.push(piece)
        buffered += piece.length
        for (let want = partSizeFor(nextPart); buffered >= want; want = partSizeFor(nextPart)) {
          uploadId ??= await this.createUpload(key, signal)
          while (inFlight.size >= this.concurrency) await Promise.race(inFlight)
          if (failed.yes) throw failed.err
          startPart(take(want))
        }
      }
      signal?.throwIfAborted()
      const got = hash.digest('hex')
      if (got !== hex) throw new DigestMismatchError(`${this.what(key)}: the ${size} bytes written hash to sha256:${got}, not sha256:${hex}; nothing was stored`)
      const rest = take(buffered)
      if (uploadId === undefined) {
        await withRetries(async s => {
          await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: rest, ContentLength: rest.length }), { abortSignal: s })
        }, { ...this.retry(key, signal), deadline: false })
      } else {
        if (rest.length > 0) startPart(rest)
        await Promise.all(inFlight)
        if (failed.yes) throw failed.err
        parts.sort((a, b) => a.PartNumber - b.PartNumber)
        await withRetries(async s => {
          await this.client.send(new CompleteMultipartUploadCommand({
            Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts }
          }), { abortSignal: s })
        }, { ...this.retry(key, signal), deadline: false })
      }
      return { size }
    } catch (err) {
      await Promise.allSettled(inFlight)
      if (uploadId !== undefined) {
        // Best effort, and not bound to the caller's signal: a left-over upload costs storage until a lifecycle rule removes it.
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => {})
      }
      if (signal?.aborted === true) throw signal.reason
      throw err instanceof ImgswarmError ? err : mapS3Error(err, this.what(key))
    }
  }

  async writeManifest (hex: string, bytes: Uint8Array, options: OriginCallOptions = {}): Promise<void> {
    checkHex(hex)
    const key = manifestKey(this.prefix, hex)
    if (bytes.length > this.tuning.maxManifestBytes) throw new InvalidManifestError(`${this.what(key)}: manifest of ${bytes.length} bytes is larger than the ${this.tuning.maxManifestBytes} allowed`)
    await withRetries(async signal => {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.length }), { abortSignal: signal })
    }, { ...this.retry(key, options.signal), deadline: false })
  }

  async writeProfile (hex: string, bytes: Uint8Array, options: OriginCallOptions = {}): Promise<void> {
    checkHex(hex)
    const key = profileKey(this.prefix, hex)
    if (bytes.length > MAX_PROFILE_ENCODED) throw new InvalidManifestError(`${this.what(key)}: boot profile of ${bytes.length} bytes is larger than the ${MAX_PROFILE_ENCODED} allowed`)
    await withRetries(async signal => {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.length }), { abortSignal: signal })
    }, { ...this.retry(key, options.signal), deadline: false })
  }

  async close (): Promise<void> {
    this.client.destroy()
  }

  private what (key: string): string {
    return `s3://${this.bucket}/${key}`
  }

  private retry (key: string, signal?: AbortSignal): RetryOptions {
    return { ...this.tuning, what: this.what(key), signal, mapError: err => mapS3Error(err, this.what(key)) }
  }

  /** Part sizes grow (doubling every quarter of MAX_PARTS) so that an image of unknown size never runs out of part numbers. */
  private partSizeFor (partNumber: number): number {
    return this.partSize * 2 ** Math.floor((partNumber - 1) / (MAX_PARTS / 4))
  }

  private async head (key: string, signal: AbortSignal): Promise<OriginStat | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal })
      return { size: res.ContentLength ?? 0 }
    } catch (err) {
      if (mapS3Error(err, '') instanceof OriginNotFoundError) return undefined
      throw err
    }
  }

  private async openRange (key: string, start: number, end: number | undefined, signal: AbortSignal): Promise<OpenedRange> {
    const range = start > 0 || end !== undefined ? `bytes=${start}-${end === undefined ? '' : end - 1}` : undefined
    let res: GetObjectCommandOutput
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }), { abortSignal: signal })
    } catch (err) {
      if (mapS3Error(err, '') instanceof OriginRangeError) {
        // The range starts at or past the end: let the reader compare it with the real size.
        const st = await this.head(key, signal)
        if (st !== undefined) return { size: st.size, body: empty() }
      }
      throw err
    }
    const body = res.Body as Readable
    addAbortSignal(signal, body)
    let size: number | undefined
    if (res.ContentRange !== undefined) {
      const cr = parseContentRange(res.ContentRange)
      if (cr === undefined || cr.start !== start || cr.size === undefined) {
        body.destroy()
        throw new OriginError(`${this.what(key)}: asked for bytes from ${start}, got Content-Range "${res.ContentRange}"`)
      }
      size = cr.size
    } else if (range === undefined) {
      size = res.ContentLength
    } else if (start === 0 && res.ContentLength !== undefined) {
      size = res.ContentLength
    }
    return { size, body: body.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>, cancel: () => { release(body as IncomingMessage) } }
  }

  private async createUpload (key: string, signal?: AbortSignal): Promise<string> {
    return await withRetries(async s => {
      const res = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }), { abortSignal: s })
      if (res.UploadId === undefined) throw new OriginError(`${this.what(key)}: the server started a multipart upload without an id`)
      return res.UploadId
    }, this.retry(key, signal))
  }

  private async uploadPart (key: string, uploadId: string, n: number, bytes: Buffer, signal?: AbortSignal): Promise<Part> {
    return await withRetries(async s => {
      const res = await this.client.send(new UploadPartCommand({
        Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: bytes, ContentLength: bytes.length
      }), { abortSignal: s })
      if (res.ETag === undefined) throw new OriginError(`${this.what(key)}: part ${n} stored without an ETag`)
      return { PartNumber: n, ETag: res.ETag }
    }, { ...this.retry(key, signal), deadline: false })
  }
}

async function * empty (): AsyncGenerator<Uint8Array> {}

/** Turns an AWS SDK failure into our error for that condition, keeping it as `cause`. */
function mapS3Error (err: unknown, what: string): unknown {
  if (err instanceof ImgswarmError) return err
  const e = err as { name?: string, code?: string, message?: string, $metadata?: { httpStatusCode?: number } } | null
  const name = e?.name ?? ''
  if (name === 'AbortError') return err
  const status = e?.$metadata?.httpStatusCode
  const message = (e?.message ?? String(err)).split('\n')[0]
  const detail = `${name !== '' && name !== 'Error' ? `${name}` : ''}${status !== undefined ? ` (HTTP ${status})` : ''}${message !== '' && message !== name && message !== 'UnknownError' ? `: ${message}` : ''}`.trim()
  if (name === 'NoSuchBucket') return new OriginError(`${what}: the bucket does not exist`, { cause: err })
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return new OriginNotFoundError(`${what}: not found`, { cause: err })
  if (DENIED_NAMES.has(name) || status === 401 || status === 403) {
    return new OriginAccessDeniedError(`${what}: access denied: ${detail} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the origin's credentials)`, { cause: err })
  }
  if (name === 'InvalidRange' || status === 416) return new OriginRangeError(`${what}: ${detail}`, { cause: err })
  const retryable = TRANSIENT_NAMES.has(name) || TRANSIENT_CODES.has(e?.code ?? '') || (status !== undefined && (status >= 500 || status === 429 || status === 408)) ||
    /socket hang up|aborted|premature close|ECONNRESET|EPIPE/i.test(message)
  return new OriginError(`${what}: ${detail}`, { cause: err, retryable })
}
