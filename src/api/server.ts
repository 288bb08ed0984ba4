import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https'
import { chmod, chown, unlink } from 'node:fs/promises'
import { IMAGE_TYPES, type ImageType } from '../chunks/manifest.js'
import { DaemonStartingError, ForbiddenError, UsageError } from '../errors.js'
import type { LocalNode, ReceivedSoFar } from '../local-node.js'
import type { ImageRecord } from '../store/image-record.js'
import type { Manifest } from '../chunks/manifest.js'
import { publishTo } from '../publish.js'
import { formatApiAddress, type ApiAddress } from './address.js'
import { bundleRoutes } from './bundle-routes.js'
import { errorBody, statusOf } from './http-errors.js'
import type { FetchJob } from '../fetch/fetch-job.js'
import { sendImageRange, sendRangeWhileFetching, sendWholeImage, sendWholeImageWhileFetching } from './image-stream.js'
import { parseImageNaming } from '../chunks/ref.js'
import { ImageReader } from '../serve/image-reader.js'
import { parseRange } from './range.js'
import { parseDuration } from '../util/units.js'
import type { ApiAccess } from './access.js'
import { openAllowedFile } from './import-dirs.js'

/** What the API serves. A plain store gives the local operations; a daemon adds fetching and peers. */
export interface ApiBackend {
  local: LocalNode
  /**
   * The record and manifest of an image that is available locally, fetching it first when the node
   * can (a daemon). Without a fetcher, an image that is not stored is ImageNotFoundError.
   */
  acquire: (ref: string, signal: AbortSignal) => Promise<{ record: ImageRecord, manifest: Manifest, job?: FetchJob }>
  /** Other routes (fetch jobs, node, peers, metrics, health) that a daemon adds. */
  extraRoutes?: Route[]
  /**
   * Routes that authorise their callers themselves, matched before the API's own grant is asked:
   * the Glance-compatible endpoint, where Glance decides by the caller's token.
   */
  selfAuthorisedRoutes?: Route[]
  /** Told of every image imported through the API (a daemon announces it to the swarm). */
  onImported?: (record: ImageRecord) => void
  /** Directories that `POST /v1/images?path=` may read from; none by default. */
  importDirs?: readonly string[]
  /** Origin URLs that `publish` may write to (the daemon's configuration); the first is the default. */
  publishOrigins?: readonly string[]
  /** Told of every `Range` read of an image (a daemon records boot profiles from them). */
  onRangeRead?: (record: ImageRecord, manifest: Manifest, offset: number, length: number) => void
  /** Told when an image's boot profile is dropped (a daemon then records a new one at the next boot). */
  onProfileRemoved?: (ref: string) => void
  /** What the fetches in flight have so far, by image ref (`sha256:<hex>`), shown with images in state `fetching`. */
  receiving?: () => Map<string, ReceivedSoFar>
}

export interface Route {
  method: string
  path: RegExp
  handle: (req: IncomingMessage, res: ServerResponse, match: RegExpExecArray, url: URL) => Promise<void>
  /**
   * Lets a request in that the API's access rules would not (the cluster page's signed session);
   * when it says no, the usual rules decide.
   */
  grant?: (req: IncomingMessage, url: URL) => boolean
}

/** Largest JSON request body accepted; image uploads are streamed, not bounded by this. */
const MAX_JSON_BODY = 1024 * 1024

export function sendJson (res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

export async function readJson (req: IncomingMessage): Promise<any> {
  let size = 0
  const parts: Buffer[] = []
  for await (const piece of req) {
    size += (piece as Buffer).length
    if (size > MAX_JSON_BODY) throw new UsageError(`request body over ${MAX_JSON_BODY} bytes`)
    parts.push(piece as Buffer)
  }
  if (size === 0) return {}
  let value: unknown
  try {
    value = JSON.parse(Buffer.concat(parts).toString('utf8'))
  } catch {
    throw new UsageError('request body is not valid JSON')
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError('request body must be a JSON object')
  return value
}

/** A path segment of the URL, percent-decoded; bad encoding is the caller's error, not a crash. */
export function param (segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new UsageError(`bad percent-encoding in the URL: "${segment.slice(0, 100)}"`)
  }
}

function imageHeaders (record: ImageRecord): Record<string, string> {
  return {
    'content-type': 'application/octet-stream',
    'accept-ranges': 'bytes',
    etag: `"${record.ref}"`,
    'x-imgswarm-ref': record.ref,
    'x-imgswarm-state': record.state,
    'x-imgswarm-manifest': record.manifest
  }
}

function typeParam (url: URL): ImageType | undefined {
  const t = url.searchParams.get('type')
  if (t == null) return undefined
  if (!(IMAGE_TYPES as readonly string[]).includes(t)) throw new UsageError(`type must be one of ${IMAGE_TYPES.join(', ')}`)
  return t as ImageType
}

const REF = '([^/]+)'

/** A lease's TTL from a request body, in milliseconds; undefined for a lease until released. */
function ttlOf (body: { ttl?: unknown, ttlSeconds?: unknown }): number | undefined {
  if (body.ttlSeconds != null) {
    if (typeof body.ttlSeconds !== 'number' || !(body.ttlSeconds > 0)) throw new UsageError('ttlSeconds must be a positive number')
    return Math.round(body.ttlSeconds * 1000)
  }
  if (body.ttl != null) {
    if (typeof body.ttl !== 'string') throw new UsageError('ttl must be a duration such as "90s", "30m", "12h", "7d"')
    return parseDuration(body.ttl)
  }
  return undefined
}

/** Images in state `fetching`, with what their fetch has so far when one runs here. */
function withReceived<T extends ImageRecord & { received?: ReceivedSoFar }> (images: T[], backend: ApiBackend): T[] {
  if (backend.receiving == null || !images.some(r => r.state === 'fetching')) return images
  const receiving = backend.receiving()
  return images.map(r => {
    const received = r.state === 'fetching' ? receiving.get(r.ref) : undefined
    return received != null ? { ...r, received } : r
  })
}

/** The routes every API serves: the store's operations and image streaming. */
function coreRoutes (backend: ApiBackend): Route[] {
  const { local } = backend
  return [
    {
      method: 'GET',
      path: /^\/v1\/images$/,
      handle: async (_req, res) => { sendJson(res, 200, withReceived(await local.list(), backend)) }
    },
    {
      method: 'POST',
      path: /^\/v1\/images$/,
      // Import: the body is the image, or ?path= names a file on the daemon's host.
      handle: async (req, res, _m, url) => {
        const meta = { type: typeParam(url), name: url.searchParams.get('name') ?? undefined, format: url.searchParams.get('format') ?? undefined }
        const path = url.searchParams.get('path')
        let result
        if (path != null) {
          const file = await openAllowedFile(path, backend.importDirs ?? [])
          try {
            result = await local.importStream(file.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false }), { meta })
          } finally {
            await file.close()
          }
        } else {
          result = await local.importStream(req, { meta })
        }
        backend.onImported?.(result.record)
        sendJson(res, 201, result)
      }
    },
    {
      method: 'GET',
      path: new RegExp(`^/v1/images/${REF}/info$`),
      handle: async (_req, res, m) => { sendJson(res, 200, withReceived([await local.inspect(param(m[1]))], backend)[0]) }
    },
    {
      method: 'HEAD',
      path: new RegExp(`^/v1/images/${REF}$`),
      handle: async (_req, res, m) => {
        const record = await local.store.resolve(param(m[1]))
        res.writeHead(200, { ...imageHeaders(record), 'content-length': record.size })
        res.end()
      }
    },
    {
      method: 'GET',
      path: new RegExp(`^/v1/images/${REF}$`),
      handle: async (req, res, m) => {
        const controller = new AbortController()
        res.once('close', () => { controller.abort() })
        const { record, manifest, job } = await backend.acquire(param(m[1]), controller.signal)
        // In use while it streams: eviction leaves it alone.
        const release = local.inUse.hold(record.ref.slice('sha256:'.length))
        res.once('close', release)
        const range = parseRange(req.headers.range, record.size)
        if (range !== undefined && range !== 'unsatisfiable') backend.onRangeRead?.(record, manifest, range.start, range.end - range.start + 1)
        if (job != null && !job.finished && range === undefined) {
          // Stream verified chunks as they arrive; the digest check at the end decides how it ends.
          const headers = (): void => { res.writeHead(200, { ...imageHeaders(record), 'content-length': record.size }) }
          await sendWholeImageWhileFetching(res, local.store, manifest, job, headers, controller.signal)
          return
        }
        if (job != null && !job.finished && range !== undefined && range !== 'unsatisfiable') {
          // A range of an image still arriving: its chunks are fetched first (under a trusted manifest;
          // under a peer's, the reader waits for the whole-image check).
          const ref = parseImageNaming(param(m[1]))
          const reader = new ImageReader({ store: local.store, manifest, job, manifestCid: record.manifest, namedCid: ref.kind === 'manifest' ? ref.cid.toString() : undefined })
          await sendRangeWhileFetching(res, reader, range, () => {
            res.writeHead(206, { ...imageHeaders(record), 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${record.size}` })
          }, controller.signal)
          return
        }
        if (job != null) await job.promise
        if (range === 'unsatisfiable') {
          res.writeHead(416, { 'content-range': `bytes */${record.size}` })
          res.end()
          return
        }
        if (range === undefined) {
          res.writeHead(200, { ...imageHeaders(record), 'content-length': record.size })
          await sendWholeImage(res, local.store, manifest, controller.signal)
        } else {
          res.writeHead(206, { ...imageHeaders(record), 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${record.size}` })
          await sendImageRange(res, local.store, manifest, range, controller.signal)
        }
        await local.store.noteRead(record.ref)
      }
    },
    {
      method: 'DELETE',
      path: new RegExp(`^/v1/images/${REF}$`),
      handle: async (_req, res, m, url) => {
        const { record, freed } = await local.remove(param(m[1]), { force: url.searchParams.get('force') === 'true' })
        sendJson(res, 200, { record, freed })
      }
    },
    {
      method: 'GET',
      path: new RegExp(`^/v1/images/${REF}/profile$`),
      handle: async (_req, res, m) => { sendJson(res, 200, await local.bootProfile(param(m[1]))) }
    },
    {
      method: 'DELETE',
      path: new RegExp(`^/v1/images/${REF}/profile$`),
      handle: async (_req, res, m) => {
        const out = await local.removeBootProfile(param(m[1]))
        backend.onProfileRemoved?.(out.ref)
        sendJson(res, 200, out)
      }
    },
    {
      method: 'PUT',
      path: new RegExp(`^/v1/images/${REF}/pin$`),
      handle: async (_req, res, m) => { sendJson(res, 200, await local.pin(param(m[1]))) }
    },
    {
      method: 'DELETE',
      path: new RegExp(`^/v1/images/${REF}/pin$`),
      handle: async (_req, res, m) => { sendJson(res, 200, await local.unpin(param(m[1]))) }
    },
    {
      method: 'POST',
      path: new RegExp(`^/v1/images/${REF}/publish$`),
      handle: async (req, res, m) => {
        const body = await readJson(req)
        if (body.origin != null && typeof body.origin !== 'string') throw new UsageError('publish takes { "origin": URL } (or {} for the daemon\'s origin)')
        const allowed = backend.publishOrigins ?? []
        const origin: string | undefined = body.origin ?? allowed[0]
        if (origin == null) throw new ForbiddenError('this daemon has no origin to publish to (configure --origin or --publish-origin)')
        // Only origins the operator configured: a caller must not name a module to load or a place to write.
        if (!allowed.includes(origin)) throw new ForbiddenError(`this daemon publishes only to the origins it is configured with (${allowed.join(', ') || 'none'}), not to ${origin}`)
        const record = await local.store.resolve(param(m[1]))
        sendJson(res, 200, await publishTo(local.store, record, origin))
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/leases$/,
      handle: async (_req, res) => { sendJson(res, 200, await local.leases()) }
    },
    {
      method: 'PUT',
      path: new RegExp(`^/v1/images/${REF}/leases/${REF}$`),
      // Body: {} for a lease until released, { "ttlSeconds": N } or { "ttl": "12h" } for one that lapses.
      handle: async (req, res, m) => {
        const body = await readJson(req)
        sendJson(res, 200, await local.lease(param(m[1]), param(m[2]), { ttlMs: ttlOf(body) }))
      }
    },
    {
      method: 'DELETE',
      path: new RegExp(`^/v1/images/${REF}/leases/${REF}$`),
      handle: async (_req, res, m) => { sendJson(res, 200, await local.release(param(m[1]), param(m[2]))) }
    },
    {
      method: 'GET',
      path: /^\/v1\/df$/,
      handle: async (_req, res) => { sendJson(res, 200, await local.df()) }
    },
    {
      method: 'POST',
      path: /^\/v1\/gc$/,
      handle: async (_req, res) => { sendJson(res, 200, await local.gc()) }
    },
    {
      method: 'POST',
      path: /^\/v1\/verify$/,
      handle: async (req, res) => {
        const body = await readJson(req)
        sendJson(res, 200, await local.verify(typeof body.ref === 'string' ? body.ref : undefined))
      }
    }
  ]
}

export interface ApiServer {
  address: ApiAddress
  close: () => Promise<void>
}

/** How the API guards itself: who is granted, TLS, and the unix socket's group. */
export interface ApiServerOptions {
  /** Checks every request; without it every caller that can connect is served (a store's own API in tests). */
  access?: ApiAccess
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: Buffer, key: Buffer }
  /** The unix socket's group (`--api-group`): its members may connect (mode 0660). */
  socketGid?: number
  /** Told of every request that failed with a server error, and of handler failures after the response began. */
  onError?: (err: unknown) => void
}

/**
 * Starts the local HTTP API. Errors answer with the error's code and one-line message as JSON; a
 * failure after an image's headers were sent destroys the response instead. Nothing a caller sends
 * (a malformed URL, bad percent-encoding, a body of the wrong shape) ends the server.
 */
export async function startApiServer (backend: ApiBackend, address: ApiAddress, options: ApiServerOptions = {}): Promise<ApiServer> {
  const routes = [...coreRoutes(backend), ...bundleRoutes(backend), ...(backend.extraRoutes ?? [])]
  const fail = (res: ServerResponse, err: unknown): void => {
    if (res.headersSent) {
      res.destroy(err as Error)
      return
    }
    const status = statusOf(err)
    // A daemon still starting is not a fault to log: its callers are told to retry.
    if (status >= 500 && !(err instanceof DaemonStartingError)) options.onError?.(err)
    sendJson(res, status, errorBody(err))
  }
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://imgswarm')
    } catch {
      throw new UsageError(`not a valid request target: "${String(req.url).slice(0, 100)}"`)
    }
    const own = backend.selfAuthorisedRoutes?.find(r => r.method === req.method && r.path.test(url.pathname))
    if (own != null) {
      await own.handle(req, res, own.path.exec(url.pathname)!, url)
      return
    }
    const matches = routes.filter(r => r.path.test(url.pathname))
    const route = matches.find(r => r.method === req.method)
    if (route?.grant?.(req, url) !== true) await options.access?.check(req, url.pathname, address.kind)
    if (route == null) {
      sendJson(res, matches.length > 0 ? 405 : 404, { error: { code: 'IMGSWARM_USAGE', message: `no route ${req.method ?? ''} ${url.pathname}` } })
      return
    }
    await route.handle(req, res, route.path.exec(url.pathname)!, url)
  }
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    serve(req, res).catch(err => {
      try {
        fail(res, err)
      } catch (last) {
        options.onError?.(last)
        res.destroy()
      }
    })
  }
  const server: Server | TlsServer = options.tls != null ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) : createServer(onRequest)
  server.keepAliveTimeout = 5000
  if (address.kind === 'unix') await unlink(address.path).catch(() => {})
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    if (address.kind === 'unix') {
      // The socket is made 0600 (owner only) by the umask in force while listen() binds it, and only
      // then opened to its group: no other user can connect in between.
      const previous = process.umask(0o177)
      try {
        server.listen(address.path, resolve)
      } finally {
        process.umask(previous)
      }
    } else {
      server.listen(address.port, address.host, resolve)
    }
  })
  let bound: ApiAddress = address
  if (address.kind === 'unix') {
    if (options.socketGid != null) await chown(address.path, -1, options.socketGid)
    await chmod(address.path, 0o660)
  } else {
    const a = server.address()
    if (a != null && typeof a === 'object') bound = { ...address, port: a.port }
  }
  return {
    address: bound,
    close: async () => {
      // Stop accepting, let running transfers finish for a moment, then cut what is left.
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      server.closeIdleConnections()
      const timer = setTimeout(() => server.closeAllConnections(), 2000)
      await closed
      clearTimeout(timer)
      if (address.kind === 'unix') await unlink(address.path).catch(() => {})
    }
  }
}

export { formatApiAddress }
