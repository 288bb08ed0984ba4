import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import { addAbortSignal } from 'node:stream'
import {
  DigestMismatchError, ImageNotAvailableError, ImgswarmError, OriginAccessDeniedError, OriginConfigError, OriginError,
  OriginNotFoundError, OriginRangeError, OriginTimeoutError
} from '../errors.js'
import { deadline } from '../util/deadline.js'
import { parseContentRange } from './content-range.js'
import {
  DEFAULT_TUNING, type Origin, type OriginCallOptions, type OriginCapabilities, type OriginReadOptions,
  type OriginStat, type OriginTuning
} from './origin.js'
import { TUNING_PARAMS, checkHex, defined, readParams, redact } from './params.js'
import { release } from './release-response.js'
import { resumableRead, type OpenedRange } from './resumable-read.js'
import { withRetries } from './retry.js'

/** Options of a `glance+http(s):` origin. URL parameters: the tuning names and `tokenFile`. */
export interface GlanceOriginOptions extends OriginTuning {
  /** The Keystone token the node's own reads carry (`X-Auth-Token`), when a caller gives none. */
  glanceToken?: string
  /** A file holding that token (read at every request, so a rotated token is picked up). */
  glanceTokenFile?: string
}

/** What Glance says about an image (`GET /v2/images/{id}`): the fields imgswarm uses. */
export interface GlanceImage {
  id: string
  name: string | null
  status: string
  size: number | null
  checksum: string | null
  os_hash_algo: string | null
  os_hash_value: string | null
  disk_format: string | null
  container_format: string | null
  visibility?: string
  owner?: string | null
}

/** Options of calls made for a caller: its token instead of the configured one. */
export interface GlanceCallOptions extends OriginCallOptions {
  token?: string
}

/** Glance image ids are UUIDs: anything else never reaches a URL. */
const GLANCE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Whether `text` has the form of a Glance image id (a UUID). */
export function isGlanceId (text: string): boolean {
  return GLANCE_ID.test(text)
}

const PARAMS = { ...TUNING_PARAMS, tokenFile: 'string' } as const

/** Network failures that a new connection may not see again. */
const TRANSIENT = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])

/**
 * OpenStack Glance (image API v2) as an origin: `glance+http://glance.internal:9292`. Glance names
 * images by id, not by sha256, so this origin reads by id ({@link GlanceOrigin.describe},
 * {@link GlanceOrigin.readById}) and, for the {@link Origin} interface, by the sha256 of images whose
 * id it was told ({@link GlanceOrigin.learn}) or can look up (`lookupId`, the node's alias table).
 * A hex it cannot map is simply not held (`stat` answers undefined).
 *
 * @example
 * const origin = glanceOrigin('glance+https://glance.example.com:9292', { glanceTokenFile: '/etc/imgswarm/glance-token' })
 */
export function glanceOrigin (url: string | URL, options: GlanceOriginOptions = {}): GlanceOrigin {
  let u: URL
  try {
    u = new URL(url)
  } catch (err) {
    throw new OriginConfigError(`not a URL: ${String(url)}`, { cause: err })
  }
  if (u.protocol !== 'glance+http:' && u.protocol !== 'glance+https:') throw new OriginConfigError(`not a glance+http(s): URL: ${redact(u)}`)
  if (u.username !== '' || u.password !== '') throw new OriginConfigError(`origin ${redact(u)}: give the token with --glance-token-file, not in the URL`)
  const params = readParams(u, PARAMS)
  const endpoint = new URL(`${u.protocol.slice('glance+'.length)}//${u.host}${u.pathname.replace(/\/+$/, '')}`)
  const tuning = { ...DEFAULT_TUNING, ...params, ...defined(options) }
  return new GlanceOrigin(endpoint, options.glanceToken, options.glanceTokenFile ?? params.tokenFile, tuning)
}

export class GlanceOrigin implements Origin {
  readonly url: string
  /** Glance's own URL (`http://host:port`), where the image API lives. */
  readonly endpoint: string
  readonly capabilities: OriginCapabilities = { rangeRead: true, manifests: false, write: false }
  /** Looks up the Glance id of an image by sha256 (the node's alias table); set by the node. */
  lookupId?: (hex: string) => Promise<string | undefined>
  private readonly ids = new Map<string, string>()
  /** Callers' tokens for reads by sha256, newest last; each is held only while its request is served. */
  private readonly lent = new Map<string, string[]>()
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 })

  constructor (base: URL, private readonly token: string | undefined, private readonly tokenFile: string | undefined,
    private readonly tuning: Required<OriginTuning>) {
    this.endpoint = base.href.replace(/\/$/, '')
    this.url = `glance+${this.endpoint}`
  }

  /** The token the node's own requests carry: the file's content (trimmed), the option, or none. */
  private ownToken (): string | undefined {
    if (this.tokenFile !== undefined) {
      try {
        return readFileSync(this.tokenFile, 'utf8').trim()
      } catch (err) {
        throw new OriginConfigError(`cannot read the Glance token file ${this.tokenFile}: ${(err as Error).message}`, { cause: err })
      }
    }
    return this.token
  }

  /**
   * Notes that image `hex` is Glance image `id`, so that reads by sha256 (chunks that no peer holds)
   * go to Glance. They carry the node's own token unless a caller lends one ({@link lendToken}).
   */
  learn (hex: string, id: string): void {
    checkHex(hex)
    if (!isGlanceId(id)) throw new OriginConfigError(`not a Glance image id: ${id.slice(0, 80)}`)
    this.ids.set(hex, id)
  }

  /**
   * Lends a caller's token to reads of image `hex` by sha256 until the returned function is called,
   * when the caller's request ends. A caller's token must not outlive its request: it expires, and
   * it is that caller's, not the node's, so later reads go back to the node's own token.
   */
  lendToken (hex: string, token: string): () => void {
    checkHex(hex)
    const tokens = this.lent.get(hex) ?? []
    tokens.push(token)
    this.lent.set(hex, tokens)
    let returned = false
    return () => {
      if (returned) return
      returned = true
      tokens.splice(tokens.lastIndexOf(token), 1)
      if (tokens.length === 0 && this.lent.get(hex) === tokens) this.lent.delete(hex)
    }
  }

  /** The token for a read of `hex` now: the newest lent by a request still being served, else the node's. */
  private tokenFor (hex: string): string | undefined {
    return this.lent.get(hex)?.at(-1)
  }

  private async idOf (hex: string): Promise<string | undefined> {
    checkHex(hex)
    return this.ids.get(hex) ?? await this.lookupId?.(hex)
  }

  /**
   * Glance's metadata of an image, as the caller (its token) may see it.
   * @throws OriginNotFoundError for an id Glance does not know or hides from the caller; OriginAccessDeniedError when it refuses the token
   */
  async describe (id: string, options: GlanceCallOptions = {}): Promise<GlanceImage> {
    const url = this.imageUrl(id)
    return await withRetries(async signal => {
      const res = await this.request('GET', url, this.headers(options.token), signal)
      if (res.statusCode !== 200) throw statusError(res, `Glance image ${id}`)
      const text = await readBody(res, 1024 * 1024)
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch (err) {
        throw new OriginError(`${url.href}: Glance's answer is not JSON`, { cause: err })
      }
      return checkGlanceImage(value, url.href, id)
    }, this.retryOptions(url, options.signal))
  }

  async stat (hex: string, options: OriginCallOptions = {}): Promise<OriginStat | undefined> {
    const id = await this.idOf(hex)
    if (id === undefined) return undefined
    try {
      const image = await this.describe(id, { ...options, token: this.tokenFor(hex) })
      return image.status === 'active' && image.size != null ? { size: image.size } : undefined
    } catch (err) {
      if (err instanceof OriginNotFoundError) return undefined
      throw err
    }
  }

  read (hex: string, options: OriginReadOptions = {}): AsyncIterable<Uint8Array> {
    checkHex(hex)
    return async function * (this: GlanceOrigin): AsyncGenerator<Uint8Array> {
      const id = await this.idOf(hex)
      if (id === undefined) throw new OriginNotFoundError(`${this.url}: no Glance image is known for sha256:${hex}`)
      // The token is chosen at each request: a transfer resumed after its caller left uses the node's.
      yield * this.readFile(id, options, () => this.tokenFor(hex))
    }.call(this)
  }

  /**
   * The bytes of Glance image `id`, whole or a range (`GET /v2/images/{id}/file`, single `Range`),
   * resumed where a broken transfer stopped. Not checked here: see {@link checkedAgainst}.
   */
  readById (id: string, options: OriginReadOptions & GlanceCallOptions = {}): AsyncIterable<Uint8Array> {
    return this.readFile(id, options, () => options.token)
  }

  private readFile (id: string, options: OriginReadOptions, token: () => string | undefined): AsyncIterable<Uint8Array> {
    const url = new URL(`${this.imageUrl(id).href}/file`)
    return resumableRead({
      what: url.href,
      open: async (start, end, signal) => await this.openRange(url, start, end, token(), signal),
      stat: async signal => {
        const image = await this.describe(id, { token: token(), signal })
        return image.size != null ? { size: image.size } : undefined
      },
      mapError: err => mapError(err, url.href)
    }, { ...this.tuning, ...options })
  }

  async readManifest (hex: string, options: OriginCallOptions = {}): Promise<Uint8Array | undefined> {
    checkHex(hex)
    options.signal?.throwIfAborted()
    return undefined
  }

  /**
   * One request to Glance as the caller, for the Glance-compatible endpoint: the answer as it comes
   * (status, headers, body), not retried. `path` starts with `/`. Glance's answer must begin within
   * the origin's `timeoutMs`; its body is the caller's to bound ({@link GlanceOrigin.timeoutMs}).
   * @throws OriginTimeoutError when Glance does not answer in time
   */
  async forward (method: string, path: string, headers: Record<string, string>, body: AsyncIterable<Uint8Array> | undefined, signal: AbortSignal): Promise<IncomingMessage> {
    const target = new URL(this.endpoint + path)
    const d = deadline(this.tuning.timeoutMs, signal)
    try {
      const answer = await this.request(method, target, headers, d.signal, body)
      // The deadline bounds only the wait for the answer; the caller's signal still ends its body.
      addAbortSignal(signal, answer)
      return answer
    } catch (err) {
      if (d.signal.aborted && !signal.aborted) throw new OriginTimeoutError(`${method} ${target.href}: Glance did not answer in ${this.tuning.timeoutMs} ms`, { cause: err })
      throw err
    } finally {
      d.clear()
    }
  }

  /** How long the endpoint waits on Glance (for an answer, or for more of a body): the origin's `timeoutMs`. */
  get timeoutMs (): number {
    return this.tuning.timeoutMs
  }

  async close (): Promise<void> {
    this.httpAgent.destroy()
    this.httpsAgent.destroy()
  }

  private imageUrl (id: string): URL {
    if (!isGlanceId(id)) throw new OriginNotFoundError(`not a Glance image id: "${String(id).slice(0, 80)}"`)
    return new URL(`${this.endpoint}/v2/images/${id.toLowerCase()}`)
  }

  private headers (token: string | undefined): Record<string, string> {
    const t = token ?? this.ownToken()
    return t === undefined || t === '' ? {} : { 'x-auth-token': t }
  }

  private retryOptions (url: URL, signal?: AbortSignal): Parameters<typeof withRetries>[1] {
    return { ...this.tuning, what: url.href, signal, mapError: err => mapError(err, url.href) }
  }

  private async openRange (url: URL, start: number, end: number | undefined, token: string | undefined, signal: AbortSignal): Promise<OpenedRange> {
    const ranged = start > 0 || end !== undefined
    const headers = { ...this.headers(token), ...(ranged ? { range: `bytes=${start}-${end === undefined ? '' : end - 1}` } : {}) }
    const res = await this.request('GET', url, headers, signal)
    const status = res.statusCode ?? 0
    if (status === 206) {
      const cr = parseContentRange(res.headers['content-range'])
      if (cr === undefined || cr.start !== start) {
        res.destroy()
        throw new OriginError(`${url.href}: asked for bytes from ${start}, got Content-Range "${res.headers['content-range'] ?? ''}"`)
      }
      return { size: cr.size, body: body(res, signal, 0), cancel: () => { release(res) } }
    }
    if (status === 200) {
      const size = Number(res.headers['content-length'] ?? NaN)
      return { size: Number.isSafeInteger(size) ? size : undefined, body: body(res, signal, start), cancel: () => { release(res) } }
    }
    if (status === 204) {
      res.resume()
      throw new ImageNotAvailableError(`${url.href}: Glance holds no data for this image (HTTP 204)`)
    }
    if (status === 416) {
      res.resume()
      // Glance's 416 carries no Content-Range: a read that starts at the very end is empty, not an error.
      const image = await this.describe(url.pathname.split('/')[3], { token, signal })
      if (image.size != null && start === image.size) return { size: image.size, body: empty() }
      throw new OriginRangeError(`${url.href}: bytes from ${start} asked for, but the image has ${image.size ?? '?'} bytes (HTTP 416)`)
    }
    throw statusError(res, url.href)
  }

  private async request (method: string, url: URL, headers: Record<string, string>, signal: AbortSignal, upload?: AsyncIterable<Uint8Array>): Promise<IncomingMessage> {
    return await new Promise<IncomingMessage>((resolve, reject) => {
      const secure = url.protocol === 'https:'
      const req = (secure ? https : http).request(url, {
        method,
        signal,
        agent: secure ? this.httpsAgent : this.httpAgent,
        headers: { 'user-agent': 'imgswarm', 'accept-encoding': 'identity', ...headers }
      }, resolve)
      req.on('error', reject)
      if (upload === undefined) {
        req.end()
        return
      }
      void (async () => {
        for await (const piece of upload) if (!req.write(piece)) await new Promise(resolve => req.once('drain', resolve))
        req.end()
      })().catch(err => { req.destroy(err as Error) })
    })
  }
}

const NULLABLE_TEXT = ['name', 'checksum', 'os_hash_algo', 'os_hash_value', 'disk_format', 'container_format'] as const

/**
 * Glance's image record (its JSON) as a {@link GlanceImage} with every field of its type, or an
 * error: code that hashes and compares by these fields must not meet a number where it expects text.
 * A field Glance leaves out is null. With `id`, the record must be of that image.
 * @throws OriginError for anything that is not an image record
 */
export function checkGlanceImage (value: unknown, where: string, id?: string): GlanceImage {
  const bad = (why: string): OriginError => new OriginError(`${where}: Glance's answer is not an image record (${why})`)
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw bad('not an object')
  const o = value as Record<string, unknown>
  if (typeof o.id !== 'string' || (id !== undefined && o.id !== id)) throw bad('another id')
  if (typeof o.status !== 'string') throw bad('no status')
  const size = o.size ?? null
  if (size !== null && !(typeof size === 'number' && Number.isSafeInteger(size) && size >= 0)) throw bad('size')
  const image: GlanceImage = { id: o.id, status: o.status, size, name: null, checksum: null, os_hash_algo: null, os_hash_value: null, disk_format: null, container_format: null }
  for (const k of NULLABLE_TEXT) {
    const v = o[k] ?? null
    if (v !== null && typeof v !== 'string') throw bad(k)
    image[k] = v
  }
  if (typeof o.visibility === 'string') image.visibility = o.visibility
  if (typeof o.owner === 'string' || o.owner === null) image.owner = o.owner
  return image
}

/**
 * Passes `source` (the whole of Glance image `image`) through, and at its end checks it against what
 * Glance says: its size, `os_hash_value` (by `os_hash_algo`) or, without one, its MD5 `checksum`.
 * A mismatch throws before the source's end is reached by the consumer, so an ingest that reads
 * from this stores nothing.
 */
export async function * checkedAgainst (image: GlanceImage, source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const algo = image.os_hash_value != null && image.os_hash_algo != null ? image.os_hash_algo : image.checksum != null ? 'md5' : undefined
  const expected = image.os_hash_value != null && image.os_hash_algo != null ? image.os_hash_value : image.checksum ?? undefined
  let hash
  try {
    hash = algo === undefined ? undefined : createHash(algo)
  } catch (err) {
    throw new OriginError(`Glance image ${image.id}: its hash algorithm "${algo ?? ''}" is not one this node can compute`, { cause: err })
  }
  let size = 0
  let held: Uint8Array | undefined
  // One piece is held back, so the consumer sees the end only after the check passed.
  for await (const piece of source) {
    size += piece.length
    hash?.update(piece)
    if (held !== undefined) yield held
    held = piece
  }
  if (image.size != null && size !== image.size) {
    throw new DigestMismatchError(`Glance image ${image.id} sent ${size} bytes, but Glance says it has ${image.size}: refused, nothing stored`)
  }
  if (hash !== undefined && expected !== undefined) {
    const actual = hash.digest('hex')
    if (actual !== expected.toLowerCase()) {
      throw new DigestMismatchError(`Glance image ${image.id}: its bytes hash to ${algo ?? ''}:${actual}, but Glance says ${algo ?? ''}:${expected}: refused, nothing stored`)
    }
  }
  if (held !== undefined) yield held
}

async function readBody (res: IncomingMessage, max: number): Promise<string> {
  const parts: Buffer[] = []
  let size = 0
  for await (const piece of res as AsyncIterable<Buffer>) {
    size += piece.length
    if (size > max) {
      res.destroy()
      throw new OriginError(`Glance's answer is larger than ${max} bytes`)
    }
    parts.push(piece)
  }
  return Buffer.concat(parts).toString('utf8')
}

async function * body (res: IncomingMessage, signal: AbortSignal, skip: number): AsyncGenerator<Uint8Array> {
  addAbortSignal(signal, res)
  try {
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
  if (status === 404) return new OriginNotFoundError(`${what}: not found in Glance (HTTP 404)`)
  if (status === 401 || status === 403) return new OriginAccessDeniedError(`${what}: Glance refused the token (HTTP ${status})`)
  if (status === 416) return new OriginRangeError(`${what}: HTTP 416`)
  return new OriginError(`${what}: Glance answered HTTP ${status} ${res.statusMessage ?? ''}`.trim(), { retryable: status === 408 || status === 429 || status >= 500 })
}

function mapError (err: unknown, what: string): unknown {
  if (err instanceof ImgswarmError || (err as Error | null)?.name === 'AbortError') return err
  const code = String((err as { code?: unknown } | null)?.code ?? '')
  const message = (err as Error | null)?.message?.split('\n')[0] ?? String(err)
  const retryable = TRANSIENT.has(code) || /socket hang up|aborted|premature close/i.test(message)
  return new OriginError(`${what}: ${message}${code !== '' && !message.includes(code) ? ` (${code})` : ''}`, { cause: err, retryable })
}
