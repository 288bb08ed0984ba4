import { createHash, randomBytes } from 'node:crypto'
import { open, rename, stat, unlink } from 'node:fs/promises'
import { request, type IncomingMessage, type RequestOptions } from 'node:http'
import { request as tlsRequest } from 'node:https'
import { basename, dirname, join } from 'node:path'
import type { Writable } from 'node:stream'
import type { BundleImportResult, ImportBundleOptions } from '../bundle/bundle-import.js'
import type { WriteBundleOptions } from '../bundle/bundle-writer.js'
import type { BundleSummary } from '../bundle/summary.js'
import { ApiError, ApiUnreachableError, DigestMismatchError, OutputError } from '../errors.js'
import type { CacheReport } from '../cache/evictor.js'
import type { ImageDetails, ImageListing, ImportOptions, LeaseOptions, ProgressOptions } from '../local-node.js'
import type { ImageService } from '../service.js'
import type { BootProfileSummary } from '../store/boot-profiles.js'
import type { ImageRecord } from '../store/image-record.js'
import type { IngestResult } from '../store/ingest.js'
import type { Lease } from '../store/lease.js'
import type { GcResult } from '../store/level-store.js'
import type { VerifyReport } from '../store/verify.js'
import { openInput } from '../util/input.js'
import { formatApiAddress, type ApiAddress } from './address.js'
import { errorFromBody } from './http-errors.js'

/**
 * The image operations of a running daemon, through its HTTP API. Errors come back as the same classes
 * and messages a local call raises. Exports are checked end to end: the bytes received must hash to
 * the image's digest before the file is renamed into place.
 */
export class ApiClient implements ImageService {
  readonly address: ApiAddress
  /** Sent as `Authorization: Bearer …` when set: for callers the daemon does not grant by their uid. */
  private readonly token?: string

  /** `token` defaults to `IMGSWARM_API_TOKEN`. */
  constructor (address: ApiAddress, options: { token?: string } = {}) {
    this.address = address
    const token = options.token ?? process.env.IMGSWARM_API_TOKEN
    this.token = token != null && token !== '' ? token : undefined
  }

  /** Sends a request; resolves with the response once its headers arrive. */
  async send (method: string, path: string, options: { body?: AsyncIterable<Uint8Array> | Uint8Array | string, headers?: Record<string, string>, signal?: AbortSignal } = {}): Promise<IncomingMessage> {
    const base: RequestOptions = this.address.kind === 'unix'
      ? { socketPath: this.address.path }
      : { host: this.address.host, port: this.address.port }
    return await new Promise((resolve, reject) => {
      const headers = this.token != null ? { ...options.headers, authorization: `Bearer ${this.token}` } : options.headers
      const send = this.address.kind === 'tcp' && this.address.tls === true ? tlsRequest : request
      const req = send({ ...base, method, path, headers, signal: options.signal }, resolve)
      req.on('error', err => {
        // The caller's own abort (Ctrl-C) is no fault of the daemon's: its reason goes up as it is.
        if (options.signal?.aborted === true) {
          reject(options.signal.reason)
          return
        }
        reject(new ApiUnreachableError(`cannot reach the imgswarm daemon at ${formatApiAddress(this.address)}: ${(err as Error).message}`, { cause: err }))
      })
      const body = options.body
      if (body == null || typeof body === 'string' || body instanceof Uint8Array) {
        req.end(body)
      } else {
        (async () => {
          for await (const piece of body) {
            if (!req.write(piece)) await new Promise(resolve => req.once('drain', resolve))
          }
          req.end()
        })().catch(err => req.destroy(err as Error))
      }
    })
  }

  /** A JSON call: the parsed body, or the error the daemon reported. */
  async call<T> (method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
    const text = await readText(res)
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch {
      throw new ApiError(`the daemon answered HTTP ${res.statusCode ?? 0} with a body that is not JSON`)
    }
    if ((res.statusCode ?? 500) >= 400) throw errorFromBody(parsed, res.statusCode ?? 500)
    return parsed as T
  }

  async importFile (path: string, options: ImportOptions = {}): Promise<IngestResult> {
    const { stream } = await openInput(path)
    return await this.importStream(stream, options)
  }

  async importStream (source: AsyncIterable<Uint8Array>, options: ImportOptions = {}): Promise<IngestResult> {
    const q = new URLSearchParams()
    for (const [k, v] of Object.entries(options.meta ?? {})) if (v != null) q.set(k, String(v))
    return await this.upload<IngestResult>(`/v1/images?${q.toString()}`, 'application/octet-stream', source, options)
  }

  async export (ref: string, target: string | Writable, options: ProgressOptions = {}): Promise<ImageRecord> {
    const res = await this.send('GET', `/v1/images/${encodeURIComponent(ref)}`, { signal: options.signal })
    if ((res.statusCode ?? 500) >= 400) throw errorFromBody(safeJson(await readText(res)), res.statusCode ?? 500)
    const fullRef = String(res.headers['x-imgswarm-ref'])
    const hash = createHash('sha256')
    let done = 0
    const check = (): void => {
      const got = `sha256:${hash.digest('hex')}`
      if (got !== fullRef) throw new DigestMismatchError(`received bytes hash to ${got}, not ${fullRef}`)
    }
    const body = cutShortAs(res, fullRef, options.signal)
    if (typeof target !== 'string') {
      for await (const piece of body) {
        hash.update(piece as Buffer)
        done += (piece as Buffer).length
        if (!target.write(piece)) await new Promise(resolve => target.once('drain', resolve))
        options.onProgress?.(done)
      }
      if (!res.complete) throw new ApiError(`the daemon cut the transfer of ${fullRef} short`)
      check()
    } else {
      const dir = dirname(target)
      if ((await stat(dir).catch(() => undefined))?.isDirectory() !== true) throw new OutputError(`cannot write ${target}: directory ${dir} does not exist`)
      const tmp = join(dir, `.${basename(target)}.imgswarm-${randomBytes(6).toString('hex')}.tmp`)
      const fh = await open(tmp, 'wx', 0o644)
      try {
        for await (const piece of body) {
          hash.update(piece as Buffer)
          await fh.write(piece as Buffer)
          done += (piece as Buffer).length
          options.onProgress?.(done)
        }
        if (!res.complete) throw new ApiError(`the daemon cut the transfer of ${fullRef} short`)
        check()
        await fh.sync()
        await fh.close()
        await rename(tmp, target)
      } catch (err) {
        await fh.close().catch(() => {})
        await unlink(tmp).catch(() => {})
        throw err
      }
    }
    return await this.call<ImageDetails>('GET', `/v1/images/${encodeURIComponent(fullRef)}/info`)
  }

  async list (): Promise<ImageListing[]> { return await this.call('GET', '/v1/images') }
  /** The daemon streams an unsigned bundle; it is checked, and signed when asked, here (see relayBundle). */
  async createBundle (refs: string[], target: string | Writable, options: WriteBundleOptions = {}): Promise<BundleSummary> {
    const res = await this.send('POST', '/v1/bundles', { body: JSON.stringify({ refs }), headers: { 'content-type': 'application/json' }, signal: options.signal })
    if ((res.statusCode ?? 500) >= 400) throw errorFromBody(safeJson(await readText(res)), res.statusCode ?? 500)
    // The bundle code (CAR, CBOR) loads only for the commands that use it.
    const [{ writeBundleTo }, { relayBundle }] = await Promise.all([import('../bundle/bundle-output.js'), import('../bundle/bundle-relay.js')])
    return await writeBundleTo(target, relayBundle(completeBody(res, 'bundle'), options))
  }

  async importBundle (source: AsyncIterable<Uint8Array>, options: ImportBundleOptions = {}): Promise<BundleImportResult> {
    const q = new URLSearchParams()
    const { keyFingerprint } = await import('../bundle/operator-key.js')
    for (const key of options.trust ?? []) q.append('trust', keyFingerprint(key))
    return await this.upload<BundleImportResult>(`/v1/bundles/import?${q.toString()}`, 'application/vnd.ipld.car', source, options)
  }

  /** POSTs a stream as the body, telling `onProgress` the bytes sent; the JSON answer or its error. */
  private async upload<T> (path: string, type: string, source: AsyncIterable<Uint8Array>, options: ProgressOptions): Promise<T> {
    let sent = 0
    async function * counted (): AsyncGenerator<Uint8Array> {
      for await (const piece of source) {
        sent += piece.length
        options.onProgress?.(sent)
        yield piece
      }
    }
    const res = await this.send('POST', path, { body: counted(), headers: { 'content-type': type }, signal: options.signal })
    const text = await readText(res)
    if ((res.statusCode ?? 500) >= 400) throw errorFromBody(safeJson(text), res.statusCode ?? 500)
    return JSON.parse(text) as T
  }

  async inspect (ref: string): Promise<ImageDetails> { return await this.call('GET', `/v1/images/${encodeURIComponent(ref)}/info`) }
  async bootProfile (ref: string): Promise<BootProfileSummary> { return await this.call('GET', `/v1/images/${encodeURIComponent(ref)}/profile`) }
  async removeBootProfile (ref: string): Promise<{ ref: string, removed: boolean }> { return await this.call('DELETE', `/v1/images/${encodeURIComponent(ref)}/profile`) }
  async remove (ref: string, options: { force?: boolean } = {}): Promise<{ record: ImageRecord, freed: GcResult }> {
    return await this.call('DELETE', `/v1/images/${encodeURIComponent(ref)}${options.force === true ? '?force=true' : ''}`)
  }

  async pin (ref: string): Promise<ImageRecord> { return await this.call('PUT', `/v1/images/${encodeURIComponent(ref)}/pin`) }
  async unpin (ref: string): Promise<ImageRecord> { return await this.call('DELETE', `/v1/images/${encodeURIComponent(ref)}/pin`) }
  async lease (ref: string, holder: string, options: LeaseOptions = {}): Promise<Lease> {
    return await this.call('PUT', `/v1/images/${encodeURIComponent(ref)}/leases/${encodeURIComponent(holder)}`, options.ttlMs != null ? { ttlSeconds: options.ttlMs / 1000 } : {})
  }

  async release (ref: string, holder: string): Promise<{ ref: string, holder: string, released: boolean }> {
    return await this.call('DELETE', `/v1/images/${encodeURIComponent(ref)}/leases/${encodeURIComponent(holder)}`)
  }

  async leases (): Promise<Lease[]> { return await this.call('GET', '/v1/leases') }
  async df (): Promise<CacheReport> { return await this.call('GET', '/v1/df') }
  async gc (): Promise<GcResult> { return await this.call('POST', '/v1/gc') }
  async verify (ref?: string): Promise<VerifyReport> { return await this.call('POST', '/v1/verify', { ref }) }
  async close (): Promise<void> {}
}

/**
 * The body, with a transfer the daemon aborted (a failed fetch or check) reported as such; one that
 * the caller stopped through `signal` ends with the signal's reason.
 */
async function * cutShortAs (res: IncomingMessage, ref: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  try {
    for await (const piece of res) yield piece as Buffer
  } catch (err) {
    if (signal?.aborted === true) throw signal.reason
    throw new ApiError(`the daemon aborted the transfer of ${ref} (${(err as Error).message}); \`imgswarm inspect ${ref}\` tells why`, { cause: err })
  }
}

/** A response body that throws, instead of ending, when the daemon cut it short. */
async function * completeBody (res: IncomingMessage, what: string): AsyncGenerator<Buffer> {
  try {
    for await (const piece of res) yield piece as Buffer
  } catch (err) {
    throw new ApiError(`the daemon aborted the transfer of the ${what} (${(err as Error).message})`, { cause: err })
  }
  if (!res.complete) throw new ApiError(`the daemon cut the transfer of the ${what} short`)
}

async function readText (res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = []
  for await (const piece of res) parts.push(piece as Buffer)
  return Buffer.concat(parts).toString('utf8')
}

function safeJson (text: string): unknown {
  try { return JSON.parse(text) } catch { return undefined }
}

