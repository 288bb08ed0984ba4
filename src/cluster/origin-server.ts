import { createReadStream } from 'node:fs'
import { rename, stat, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** What the origin server has sent so far: benchmarks read it to measure origin egress. */
export interface OriginServerStats {
  requests: number
  /** Body bytes of images and manifests sent (headers not counted). */
  bytes: number
}

export interface OriginServer {
  url: string
  stats: OriginServerStats
  close: () => Promise<void>
}

/** Only these paths are served: the layout `publish --origin file://DIR` writes. */
const OBJECT_PATH = /^\/sha256\/[0-9a-f]{64}(\.manifest)?$/

/**
 * A small read-only HTTP origin for test clusters: serves `ROOT/sha256/<hex>` and
 * `ROOT/sha256/<hex>.manifest` with `GET` and `HEAD`, honours one `Range: bytes=a-b | a- | -n`
 * (`206`, or `416` past the end), and answers `GET /-/stats` with {@link OriginServerStats} as JSON.
 * Nothing else is served, so no path can escape ROOT.
 *
 * @example
 * const origin = await startOriginServer({ root: '/srv/images', host: '127.0.0.1', port: 0 })
 * // imgswarm daemon --origin origin.url …
 */
export async function startOriginServer (options: { root: string, host: string, port: number }): Promise<OriginServer> {
  const root = resolve(options.root)
  const stats: OriginServerStats = { requests: 0, bytes: 0 }
  const server = createServer((req, res) => {
    stats.requests++
    serve(root, req, res, stats).catch(() => { res.destroy() })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => { server.off('error', reject); resolve() })
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    stats,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

async function serve (root: string, req: IncomingMessage, res: ServerResponse, stats: OriginServerStats): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://origin').pathname
  if (req.method === 'GET' && path === '/-/stats') {
    const body = JSON.stringify(stats)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body)
    return
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-length': 0 }).end()
    return
  }
  const st = OBJECT_PATH.test(path) ? await stat(join(root, path)).catch(() => undefined) : undefined
  if (st === undefined || !st.isFile()) {
    res.writeHead(404, { 'content-length': 0 }).end()
    return
  }
  const size = st.size
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' }
  let start = 0
  let end = size - 1
  let status = 200
  const range = req.headers.range
  if (range !== undefined) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim())
    if (m === null || (m[1] === '' && m[2] === '')) {
      // Several ranges or another unit: allowed to be ignored (RFC 9110); send the whole object.
    } else {
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]))
      } else {
        start = Number(m[1])
        if (m[2] !== '') end = Math.min(end, Number(m[2]))
      }
      if (start >= size || end < start) {
        res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-length': 0 }).end()
        return
      }
      status = 206
      headers['content-range'] = `bytes ${start}-${end}/${size}`
    }
  }
  headers['content-length'] = size === 0 ? 0 : end - start + 1
  res.writeHead(status, headers)
  if (req.method === 'HEAD' || size === 0) {
    res.end()
    return
  }
  const file = createReadStream(join(root, path), { start, end })
  file.on('data', piece => { stats.bytes += piece.length })
  await pipeline(file, res)
}

/**
 * Run as a program (`node origin-server.js --root DIR --host H --port P [--ready FILE] [--cluster DIR]`)
 * it serves until SIGTERM or SIGINT. `--ready FILE` gets `{"pid", "url"}` once it listens
 * (written to a temporary name, then renamed). `--cluster` only marks the process as belonging to
 * that cluster, so that `cluster down` finds it.
 */
async function main (): Promise<void> {
  const { values } = parseArgs({
    options: { root: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, ready: { type: 'string' }, cluster: { type: 'string' } },
    strict: true
  })
  if (values.root == null || values.host == null) throw new Error('usage: origin-server --root DIR --host HOST [--port PORT] [--ready FILE]')
  const server = await startOriginServer({ root: values.root, host: values.host, port: Number(values.port ?? 0) })
  if (values.ready != null) {
    await writeFile(`${values.ready}.new`, JSON.stringify({ pid: process.pid, url: server.url }) + '\n')
    await rename(`${values.ready}.new`, values.ready)
  }
  process.stdout.write(`imgswarm origin server: ${server.url} serves ${resolve(values.root)}\n`)
  const stop = (): void => { void server.close().then(() => process.exit(0)) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch(err => {
    process.stderr.write(`imgswarm origin server: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
