import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, addAbortSignal } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Route } from '../api/server.js'
import { sendImageRange, sendWholeImage, sendWholeImageWhileFetching } from '../api/image-stream.js'
import { parseRange } from '../api/range.js'
import type { Manifest } from '../chunks/manifest.js'
import { digestRef } from '../chunks/ref.js'
import { DigestMismatchError, ImgswarmError, OriginAccessDeniedError, OriginError, OriginNotFoundError, OriginTimeoutError } from '../errors.js'
import type { FetchJob } from '../fetch/fetch-job.js'
import type { GlanceImages, ResolvedGlanceImage } from '../fetch/glance-images.js'
import type { LocalNode } from '../local-node.js'
import { isGlanceId, type GlanceImage, type GlanceOrigin } from '../origin/glance-origin.js'
import type { ImageRecord } from '../store/image-record.js'
import { withDeadline } from '../util/deadline.js'
import type { Logger } from '../util/log.js'

/** What the Glance-compatible routes need from the node. */
export interface GlanceEndpoint {
  origin: GlanceOrigin
  images: GlanceImages
  local: LocalNode
  /** The image by sha256, stored or being fetched (local store, then the swarm, then the origin). */
  acquire: (ref: string, signal: AbortSignal) => Promise<{ record: ImageRecord, manifest: Manifest, job?: FetchJob }>
  log: Logger
  /** Counts image bytes served through the endpoint, by where the node got them. */
  served?: (bytes: number) => void
}

/** Request headers not passed on to Glance: hop-by-hop ones, and the local API's own credentials. */
const DROPPED_REQUEST = new Set(['host', 'connection', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade', 'authorization', 'accept-encoding'])
/** Answer headers not passed back: hop-by-hop ones (Node frames the body itself). */
const DROPPED_ANSWER = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-authenticate', 'trailer', 'upgrade'])

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']

/**
 * Glance's image API v2 on the local API, for nova-compute (`[glance] endpoint_override`) and
 * glanceclient: `GET /v2/images/{id}/file` is served from the node (local store, then the swarm, then
 * Glance), everything else under `/v2/` and `/versions` is passed to Glance as it is, so Nova reads
 * Glance's own metadata and schemas. Before any byte of an image is served, Glance is asked for the
 * image's metadata with the caller's own token: Glance decides who may read what, every time, and a
 * refusal is passed back as Glance gave it. These routes are authorised by Glance, not by the local
 * API's grant. Errors the node raises itself are answered in Glance's shape (plain text, as webob's).
 */
export function glanceRoutes (endpoint: GlanceEndpoint): Route[] {
  const file: Route = {
    method: 'GET',
    path: /^\/v2\/images\/([^/]+)\/file$/,
    handle: guarded(async (req, res, m, url) => { await serveFile(endpoint, req, res, m[1], url) })
  }
  const passed = METHODS.map(method => ({
    method,
    path: /^\/(?:versions|v2)(?:\/.*)?$/,
    handle: guarded(async (req: IncomingMessage, res: ServerResponse, _m: RegExpExecArray, url: URL) => { await passToGlance(endpoint.origin, req, res, url) })
  }))
  return [file, ...passed]
}

/** Answers a handler's failure in Glance's error shape, or cuts the answer if it had begun. */
function guarded (fn: Route['handle']): Route['handle'] {
  return async (req, res, m, url) => {
    try {
      await fn(req, res, m, url)
    } catch (err) {
      if (res.headersSent) {
        res.destroy(err as Error)
        return
      }
      const [status, title] = err instanceof OriginNotFoundError
        ? [404, 'Not Found']
        : err instanceof OriginAccessDeniedError
          ? [403, 'Forbidden']
          : err instanceof DigestMismatchError
            ? [502, 'Bad Gateway']
            : err instanceof OriginTimeoutError ? [504, 'Gateway Timeout'] : err instanceof ImgswarmError ? [503, 'Service Unavailable'] : [500, 'Internal Server Error']
      glanceError(res, status, title, (err as Error).message ?? String(err))
    }
  }
}

/** An error as Glance (webob) writes it: `404 Not Found\n\n<message>\n\n   `, plain text. */
export function glanceError (res: ServerResponse, status: number, title: string, message: string): void {
  const body = `${status} ${title}\n\n${message.replaceAll('\n', ' ')}\n\n   `
  res.writeHead(status, { 'content-type': 'text/plain; charset=UTF-8', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/** The caller's headers to pass on to Glance. */
function forwardedHeaders (req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || DROPPED_REQUEST.has(k)) continue
    out[k] = Array.isArray(v) ? v.join(', ') : v
  }
  return out
}

/**
 * Copies Glance's answer to the caller: status, headers, body. A body Glance stops sending for
 * `timeoutMs` (while the caller is ready for more) is cut, so the caller is not left waiting.
 */
async function relay (answer: IncomingMessage, res: ServerResponse, timeoutMs: number, rewrite?: (text: string) => string): Promise<void> {
  const headers: Record<string, string | string[]> = {}
  for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !DROPPED_ANSWER.has(k)) headers[k] = v
  if (rewrite !== undefined) {
    const body = rewrite(await readSmall(answer, 'Glance\'s version document', timeoutMs))
    headers['content-length'] = String(Buffer.byteLength(body))
    res.writeHead(answer.statusCode ?? 502, headers)
    res.end(body)
    return
  }
  res.writeHead(answer.statusCode ?? 502, headers)
  await pipeline(answer, stallGuard(res, timeoutMs), res)
}

/** Passes chunks on, and fails when none came for `ms` though `downstream` could take more. */
function stallGuard (downstream: ServerResponse, ms: number): Transform {
  let timer: NodeJS.Timeout | undefined
  const arm = (): void => {
    clearTimeout(timer)
    timer = setTimeout(() => {
      // A caller that reads slowly holds the body up, not Glance.
      if (downstream.writableNeedDrain || guard.readableLength >= guard.readableHighWaterMark) arm()
      else guard.destroy(new OriginTimeoutError(`Glance sent nothing more for ${ms} ms`))
    }, ms)
  }
  const guard = new Transform({
    transform (chunk, _encoding, done) {
      arm()
      done(null, chunk)
    },
    flush (done) {
      clearTimeout(timer)
      done()
    },
    destroy (err, done) {
      clearTimeout(timer)
      done(err)
    }
  })
  arm()
  return guard
}

/** A small body of Glance's (JSON, at most 1 MiB) as text, read within `timeoutMs`. */
async function readSmall (answer: IncomingMessage, what: string, timeoutMs: number): Promise<string> {
  return await withDeadline(timeoutMs, undefined, async signal => {
    addAbortSignal(signal, answer)
    const parts: Buffer[] = []
    let size = 0
    try {
      for await (const piece of answer as AsyncIterable<Buffer>) {
        size += piece.length
        if (size > 1024 * 1024) throw new OriginError(`${what} is over 1 MiB`)
        parts.push(piece)
      }
    } catch (err) {
      if (signal.aborted) throw new OriginTimeoutError(`${what}: Glance did not send it whole in ${timeoutMs} ms`, { cause: err })
      throw err
    }
    return Buffer.concat(parts).toString('utf8')
  })
}

/** Passes one request to Glance and its answer back; the version document's links point here instead. */
async function passToGlance (origin: GlanceOrigin, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const controller = new AbortController()
  res.once('close', () => { controller.abort() })
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  const answer = await origin.forward(req.method ?? 'GET', url.pathname + url.search, forwardedHeaders(req), hasBody ? req : undefined, controller.signal)
  const here = req.headers.host
  const versions = url.pathname === '/versions' && here !== undefined && /json/.test(String(answer.headers['content-type'] ?? ''))
  await relay(answer, res, origin.timeoutMs, versions ? text => text.replaceAll(`${origin.endpoint}/`, `http://${here}/`) : undefined)
}

async function serveFile (endpoint: GlanceEndpoint, req: IncomingMessage, res: ServerResponse, rawId: string, url: URL): Promise<void> {
  const { origin, images, local } = endpoint
  const controller = new AbortController()
  res.once('close', () => { controller.abort() })
  const id = decodeURIComponent(rawId)
  if (!isGlanceId(id)) {
    // Not an id imgswarm can map: Glance answers for itself.
    await passToGlance(origin, req, res, url)
    return
  }
  // Glance first, with the caller's token: it decides whether this caller may see the image.
  const headers = forwardedHeaders(req)
  delete headers.range
  const answer = await origin.forward('GET', `/v2/images/${id}`, headers, undefined, controller.signal)
  if (answer.statusCode !== 200) {
    await relay(answer, res, origin.timeoutMs)
    return
  }
  const image = await readImage(answer, origin.timeoutMs)
  if (image.status !== 'active' || image.id !== id.toLowerCase()) {
    await passToGlance(origin, req, res, url)
    return
  }
  const rangeHeader = req.headers.range
  if (rangeHeader !== undefined && rangeHeader.includes(',')) {
    glanceError(res, 400, 'Bad Request', 'Multiple ranges are not supported.')
    return
  }
  const token = typeof req.headers['x-auth-token'] === 'string' ? req.headers['x-auth-token'] : undefined
  let resolved: ResolvedGlanceImage
  let got: Awaited<ReturnType<GlanceEndpoint['acquire']>>
  try {
    // A neighbour's claim is proved (the image hashed with Glance's algorithm) before a byte is
    // served under the id; a false one is not taken again, so the next round asks others or Glance.
    for (let round = 1; ; round++) {
      resolved = await images.resolve(id, { token, image, signal: controller.signal })
      // Chunks read from Glance for this request carry the caller's token, until its answer ends.
      if (token !== undefined) {
        const giveBack = origin.lendToken(resolved.hex, token)
        if (controller.signal.aborted) giveBack()
        else res.once('close', giveBack)
      }
      got = await endpoint.acquire(digestRef(resolved.hex), controller.signal)
      if (resolved.from !== 'peer-claim' || resolved.verify == null) break
      if (got.job != null) await got.job.promise
      try {
        await resolved.verify(await local.store.resolve(digestRef(resolved.hex)))
        resolved = { ...resolved, verify: undefined }
        got = await endpoint.acquire(digestRef(resolved.hex), controller.signal)
        break
      } catch (err) {
        if (!(err instanceof DigestMismatchError) || round >= 3) throw err
      }
    }
  } catch (err) {
    // Bytes that do not match Glance's own hash are refused, never served; a node that cannot get
    // the image otherwise (a full cache, a broken swarm) lets Glance serve it, as without imgswarm.
    if (err instanceof DigestMismatchError || controller.signal.aborted) throw err
    endpoint.log.warn('Glance image not served from the swarm; passing the request to Glance', { id, err })
    await passToGlance(origin, req, res, url)
    return
  }
  const { record, manifest, job } = got
  if (image.size != null && record.size !== image.size) {
    throw new DigestMismatchError(`Glance image ${id} has ${image.size} bytes, but ${record.ref} has ${record.size}: refused`)
  }
  const release = local.inUse.hold(record.ref.slice('sha256:'.length))
  res.once('close', release)
  const fileHeaders: Record<string, string | number> = {
    'content-type': 'application/octet-stream',
    ...(image.checksum != null ? { 'content-md5': image.checksum } : {}),
    ...(answer.headers['x-openstack-request-id'] !== undefined ? { 'x-openstack-request-id': String(answer.headers['x-openstack-request-id']) } : {}),
    'x-imgswarm-ref': record.ref
  }
  const range = parseRange(rangeHeader, record.size)
  if (job != null && !job.finished && range === undefined) {
    await sendWholeImageWhileFetching(res, local.store, manifest, job, () => { res.writeHead(200, { ...fileHeaders, 'content-length': record.size }) }, controller.signal)
    await job.promise
  } else {
    if (job != null) await job.promise
    if (range === 'unsatisfiable') {
      // As Glance: 416 without Content-Range.
      glanceError(res, 416, 'Requested Range Not Satisfiable', 'Requested range not satisfiable')
      return
    }
    if (range === undefined) {
      res.writeHead(200, { ...fileHeaders, 'content-length': record.size })
      await sendWholeImage(res, local.store, manifest, controller.signal)
    } else {
      res.writeHead(206, { ...fileHeaders, 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${record.size}` })
      await sendImageRange(res, local.store, manifest, range, controller.signal)
    }
  }
  endpoint.served?.(typeof range === 'object' ? range.end - range.start + 1 : record.size)
  await resolved.verify?.(record).catch(err => { endpoint.log.warn('Glance alias not recorded', { id, err }) })
  await local.store.noteRead(record.ref)
}

async function readImage (answer: IncomingMessage, timeoutMs: number): Promise<GlanceImage> {
  const text = await readSmall(answer, 'Glance\'s image record', timeoutMs)
  try {
    return JSON.parse(text) as GlanceImage
  } catch (err) {
    throw new OriginError('Glance\'s image record is not JSON', { cause: err })
  }
}
