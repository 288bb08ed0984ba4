import { readFileSync } from 'node:fs'
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import { addAbortSignal } from 'node:stream'
import { rootCertificates } from 'node:tls'
import {
  ImgswarmError, InvalidManifestError, OriginAccessDeniedError, OriginConfigError, OriginError, OriginNotFoundError,
  OriginRangeError
} from '../errors.js'
import {
  DEFAULT_TUNING, imageKey, manifestKey, MAX_PROFILE_ENCODED, profileKey, type Origin, type OriginCallOptions, type OriginCapabilities,
  type OriginReadOptions, type OriginStat, type OriginTuning
} from './origin.js'
import { parseContentRange } from './content-range.js'
import { TUNING_PARAMS, checkHex, defined, readParams, redact } from './params.js'
import { release } from './release-response.js'
import { resumableRead, type OpenedRange } from './resumable-read.js'
import { withRetries } from './retry.js'

/** Options of an `http:`/`https:` origin. URL parameters `header` (repeatable, `Name: value`), `caFile`, `range` and the tuning names are read too. */
export interface HttpOriginOptions extends OriginTuning {
  /** Extra request headers (an `Authorization` for a private server, say). Not sent on redirects to another host. */
  headers?: Record<string, string>
  /** PEM certificate(s) of a private CA to trust besides the system's. */
  ca?: string | Uint8Array
  /** A file holding such PEM certificate(s). */
  caFile?: string
  /** `false` never sends `Range` (every read downloads from the image's start). Default: use it, and stop if the server ignores it. */
  range?: boolean
}

const PARAMS = { ...TUNING_PARAMS, header: 'list', caFile: 'string', range: 'boolean' } as const

/** How many redirects one request follows. */
const MAX_REDIRECTS = 5

/** Network failures that a new connection may not see again. */
const TRANSIENT = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE'])

/**
 * A read-only origin on any HTTP server that serves the layout below a base URL:
 * `https://images.example.com/base` answers `GET /base/sha256/<hex>` and `/base/sha256/<hex>.manifest`.
 * Byte ranges use `Range` when the server honours it (a `206` answer, or `Accept-Ranges: bytes`);
 * when it does not, a ranged read downloads from the start and skips to the range, and
 * `capabilities.rangeRead` turns `false`.
 *
 * @example
 * const origin = httpOrigin('https://images.internal/glance?caFile=/etc/ssl/private-ca.pem', { headers: { authorization: 'Bearer …' } })
 */
export function httpOrigin (url: string | URL, options: HttpOriginOptions = {}): Origin {
  let u: URL
  try {
    u = new URL(url)
  } catch (err) {
    throw new OriginConfigError(`not a URL: ${String(url)}`, { cause: err })
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new OriginConfigError(`not an http(s): URL: ${redact(u)}`)
  if (u.username !== '' || u.password !== '') throw new OriginConfigError(`origin ${redact(u)}: put credentials in headers, not in the URL`)
  const params = readParams(u, PARAMS)
  const headers: Record<string, string> = {}
  for (const h of params.header ?? []) {
    const i = h.indexOf(':')
    if (i <= 0) throw new OriginConfigError(`origin ${redact(u)}: header parameter "${h.slice(0, 40)}" is not "Name: value"`)
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim()
  }
  for (const [k, v] of Object.entries(options.headers ?? {})) headers[k.toLowerCase()] = v
  const caFile = options.caFile ?? params.caFile
  let ca = options.ca
  if (ca === undefined && caFile !== undefined) {
    try {
      ca = readFileSync(caFile, 'utf8')
    } catch (err) {
      throw new OriginConfigError(`origin ${redact(u)}: cannot read CA file ${caFile}: ${(err as Error).message}`, { cause: err })
    }
  }
  u.search = ''
  u.hash = ''
  if (!u.pathname.endsWith('/')) u.pathname += '/'
  const tuning = { ...DEFAULT_TUNING, ...params, ...defined(options) }
  return new HttpOrigin(u, headers, ca, options.range ?? params.range ?? true, tuning)
}

class HttpOrigin implements Origin {
  readonly url: string
  private readonly caps: { rangeRead: boolean, manifests: boolean, write: boolean }
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  private readonly httpsAgent: https.Agent

  constructor (private readonly base: URL, private readonly headers: Record<string, string>, ca: string | Uint8Array | undefined,
    private useRange: boolean, private readonly tuning: Required<OriginTuning>) {
    this.url = redact(base).replace(/\/$/, '')
    this.caps = { rangeRead: useRange, manifests: true, write: false }
    this.httpsAgent = new https.Agent({
      keepAlive: true,
      maxSockets: 16,
      ca: ca === undefined ? undefined : [...rootCertificates, typeof ca === 'string' ? ca : Buffer.from(ca).toString('utf8')]
    })
  }

  get capabilities (): OriginCapabilities {
    return { ...this.caps }
  }

  async stat (hex: string, options: OriginCallOptions = {}): Promise<OriginStat | undefined> {
    checkHex(hex)
    const url = new URL(imageKey('', hex), this.base)
    return await withRetries(async signal => await this.statOnce(url, signal), this.retryOptions(url, options.signal))
  }

  read (hex: string, options: OriginReadOptions = {}): AsyncIterable<Uint8Array> {
    checkHex(hex)
    const url = new URL(imageKey('', hex), this.base)
    return resumableRead({
      what: url.href,
      open: async (start, end, signal) => await this.openRange(url, start, end, signal),
      stat: async signal => await this.statOnce(url, signal),
      mapError: err => mapHttpError(err, url.href)
    }, { ...this.tuning, ...options })
  }

  async readManifest (hex: string, options: OriginCallOptions = {}): Promise<Uint8Array | undefined> {
    checkHex(hex)
    return await this.readSmall(new URL(manifestKey('', hex), this.base), 'manifest', this.tuning.maxManifestBytes, options)
  }

  async readProfile (hex: string, options: OriginCallOptions = {}): Promise<Uint8Array | undefined> {
    checkHex(hex)
    return await this.readSmall(new URL(profileKey('', hex), this.base), 'boot profile', MAX_PROFILE_ENCODED, options)
  }

  /** A small object (manifest, profile) whole, or undefined when the server has none. */
  private async readSmall (url: URL, what: string, max: number, options: OriginCallOptions): Promise<Uint8Array | undefined> {
    return await withRetries(async signal => {
      const res = await this.request('GET', url, {}, signal)
      if (res.statusCode === 404 || res.statusCode === 410) {
        res.resume()
        return undefined
      }
      if (res.statusCode !== 200) throw statusError(res, url.href)
      const declared = Number(res.headers['content-length'] ?? NaN)
      if (declared > max) {
        res.destroy()
        throw new InvalidManifestError(`${url.href}: ${what} of ${declared} bytes is larger than the ${max} allowed`)
      }
      const pieces: Buffer[] = []
      let size = 0
      for await (const piece of res as AsyncIterable<Buffer>) {
        size += piece.length
        if (size > max) {
          res.destroy()
          throw new InvalidManifestError(`${url.href}: ${what} larger than the ${max} bytes allowed`)
        }
        pieces.push(piece)
      }
      if (!Number.isNaN(declared) && size !== declared) throw new OriginError(`${url.href}: ${what} transfer ended after ${size} of ${declared} bytes`, { retryable: true })
      const all = Buffer.concat(pieces)
      return new Uint8Array(all.buffer, all.byteOffset, all.length)
    }, this.retryOptions(url, options.signal))
  }

  async close (): Promise<void> {
    this.httpAgent.destroy()
    this.httpsAgent.destroy()
  }

  private retryOptions (url: URL, signal?: AbortSignal): Parameters<typeof withRetries>[1] {
    return { ...this.tuning, what: url.href, signal, mapError: err => mapHttpError(err, url.href) }
  }

  private async statOnce (url: URL, signal: AbortSignal): Promise<OriginStat | undefined> {
    const res = await this.request('HEAD', url, {}, signal)
    res.resume()
    if (res.statusCode === 404 || res.statusCode === 410) return undefined
    if (res.statusCode === 200) {
      this.learnRanges(res)
      const size = Number(res.headers['content-length'] ?? NaN)
      if (Number.isSafeInteger(size)) return { size }
    } else if (res.statusCode !== 405 && res.statusCode !== 501) {
      throw statusError(res, url.href)
    }
    // No usable HEAD: ask for the first byte; the answer carries the size.
    const got = await this.request('GET', url, { range: 'bytes=0-0' }, signal)
    got.destroy()
    if (got.statusCode === 404 || got.statusCode === 410) return undefined
    if (got.statusCode === 206) {
      const size = parseContentRange(got.headers['content-range'])?.size
      if (size !== undefined) return { size }
    } else if (got.statusCode === 200) {
      const size = Number(got.headers['content-length'] ?? NaN)
      if (Number.isSafeInteger(size)) return { size }
    } else if (got.statusCode === 416) {
      return { size: 0 }
    } else {
      throw statusError(got, url.href)
    }
    throw new OriginError(`${url.href}: the server does not tell the object's size`)
  }

  private async openRange (url: URL, start: number, end: number | undefined, signal: AbortSignal): Promise<OpenedRange> {
    const ranged = this.useRange && (start > 0 || end !== undefined)
    const headers: Record<string, string> = ranged ? { range: `bytes=${start}-${end === undefined ? '' : end - 1}` } : {}
    const res = await this.request('GET', url, headers, signal)
    const status = res.statusCode ?? 0
    if (status === 206) {
      this.learnRanges(res)
      const cr = parseContentRange(res.headers['content-range'])
      if (cr === undefined || cr.start !== start) {
        res.destroy()
        throw new OriginError(`${url.href}: asked for bytes from ${start}, got Content-Range "${res.headers['content-range'] ?? ''}"`)
      }
      return { size: cr.size, body: body(res, signal, 0), cancel: () => { release(res) } }
    }
    if (status === 200) {
      if (ranged) this.noRanges()
      const size = Number(res.headers['content-length'] ?? NaN)
      return { size: Number.isSafeInteger(size) ? size : undefined, body: body(res, signal, start), cancel: () => { release(res) } }
    }
    res.resume()
    if (status === 416) {
      const size = parseContentRange(res.headers['content-range'])?.size
      if (size !== undefined) return { size, body: empty() }
      throw new OriginRangeError(`${url.href}: the server refused the range ${headers.range ?? ''} (HTTP 416)`)
    }
    throw statusError(res, url.href)
  }

  /** Notes what an answer says about `Range` support. */
  private learnRanges (res: IncomingMessage): void {
    if (res.statusCode === 206) return
    if (String(res.headers['accept-ranges'] ?? '').toLowerCase() === 'none') this.noRanges()
  }

  private noRanges (): void {
    this.useRange = false
    this.caps.rangeRead = false
  }

  /** One request, following redirects; resolves once the answer's head is in. */
  private async request (method: 'GET' | 'HEAD', url: URL, extra: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
    let target = url
    for (let hops = 0; ; hops++) {
      const sameHost = target.origin === this.base.origin
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const secure = target.protocol === 'https:'
        const req = (secure ? https : http).request(target, {
          method,
          signal,
          agent: secure ? this.httpsAgent : this.httpAgent,
          headers: { 'user-agent': 'imgswarm', 'accept-encoding': 'identity', ...(sameHost ? this.headers : {}), ...extra }
        }, resolve)
        req.on('error', reject)
        req.end()
      })
      const status = res.statusCode ?? 0
      const location = res.headers.location
      if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res
      res.resume()
      if (hops >= MAX_REDIRECTS) throw new OriginError(`${url.href}: more than ${MAX_REDIRECTS} redirects`)
      target = new URL(location, target)
      if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new OriginError(`${url.href}: redirected to a non-HTTP URL`)
    }
  }
}

/** The answer's body from byte `skip` on (for servers that ignored `Range`), ending or throwing when `signal` aborts. */
async function * body (res: IncomingMessage, signal: AbortSignal, skip: number): AsyncGenerator<Uint8Array> {
  addAbortSignal(signal, res)
  try {
    // Not destroyed when the reader stops early: release() below keeps a finished connection for reuse.
    for await (let piece of res.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      if (skip > 0) {
        if (piece.length <= skip) {
          skip -= piece.length
          continue
        }
        piece = piece.subarray(skip)
        skip = 0
      }
      yield piece
    }
    if (!res.complete) throw Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' })
  } finally {
    release(res)
  }
}

async function * empty (): AsyncGenerator<Uint8Array> {}

function statusError (res: IncomingMessage, what: string): Error {
  res.resume()
  const status = res.statusCode ?? 0
  const text = `${what}: HTTP ${status} ${res.statusMessage ?? ''}`.trim()
  if (status === 404 || status === 410) return new OriginNotFoundError(`${what}: not found (HTTP ${status})`)
  if (status === 401 || status === 403) return new OriginAccessDeniedError(`${text}: check the credentials in the origin's headers`)
  if (status === 416) return new OriginRangeError(text)
  return new OriginError(text, { retryable: status === 408 || status === 429 || status >= 500 })
}

function mapHttpError (err: unknown, what: string): unknown {
  if (err instanceof ImgswarmError || (err as Error | null)?.name === 'AbortError') return err
  const code = String((err as { code?: unknown } | null)?.code ?? '')
  const message = (err as Error | null)?.message?.split('\n')[0] ?? String(err)
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
    return new OriginError(`${what}: TLS: ${message} (trust the server's CA with caFile)`, { cause: err })
  }
  const retryable = TRANSIENT.has(code) || /socket hang up|aborted|premature close/i.test(message)
  return new OriginError(`${what}: ${message}${code !== '' && !message.includes(code) ? ` (${code})` : ''}`, { cause: err, retryable })
}
