/**
 * Servers on 127.0.0.1 for the origin tests: a static file server for the origin layout (with or
 * without `Range`), a TCP proxy that cuts a connection after N bytes (a real mid-transfer fault),
 * and a server that accepts connections and never answers (for timeouts).
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join, normalize } from 'node:path'

export interface Listening {
  port: number
  url: string
  close: () => Promise<void>
}

export interface FileServer extends Listening {
  /** Every request seen: method, path, Range and all headers. */
  requests: Array<{ method: string, path: string, range?: string, headers: IncomingMessage['headers'] }>
}

/**
 * Serves `dir` read-only over HTTP(S): GET and HEAD, `Range: bytes=a-b | a- | -n` with 206/416 when
 * `ranges` is true; when false, Range is ignored and no `Accept-Ranges` is sent (a plain server).
 * `before` may answer a request itself (return true), to inject errors.
 */
export async function fileServer (dir: string, options: { ranges: boolean, tls?: { key: string, cert: string }, before?: (req: IncomingMessage, res: ServerResponse) => boolean }): Promise<FileServer> {
  const requests: FileServer['requests'] = []
  const handler: RequestListener = (req, res) => {
    requests.push({ method: req.method ?? '', path: req.url ?? '', range: req.headers.range, headers: req.headers })
    if (options.before?.(req, res) === true) return
    serve(dir, options.ranges, req, res).catch(() => { res.destroy() })
  }
  const server = options.tls === undefined ? createHttpServer(handler) : createHttpsServer(options.tls, handler)
  const l = await listen(server)
  return { ...l, url: options.tls === undefined ? l.url : l.url.replace('http:', 'https:'), requests }
}

async function serve (dir: string, ranges: boolean, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const rel = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '')
  const path = join(dir, rel)
  const st = await stat(path).catch(() => undefined)
  if (st === undefined || !st.isFile() || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(st === undefined ? 404 : 405, { 'content-length': 0 }).end()
    return
  }
  const size = st.size
  let start = 0
  let end = size - 1
  let status = 200
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' }
  if (ranges) headers['accept-ranges'] = 'bytes'
  const m = ranges ? /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '') : null
  if (m !== null) {
    if (m[1] === '') {
      start = Math.max(0, size - Number(m[2]))
    } else {
      start = Number(m[1])
      if (m[2] !== '') end = Math.min(end, Number(m[2]))
    }
    if (start >= size) {
      res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-length': 0 }).end()
      return
    }
    status = 206
    headers['content-range'] = `bytes ${start}-${end}/${size}`
  }
  headers['content-length'] = end - start + 1
  res.writeHead(status, headers)
  if (req.method === 'HEAD' || end < start) {
    res.end()
    return
  }
  createReadStream(path, { start, end }).pipe(res)
}

export interface FaultProxy extends Listening {
  /**
   * Arms a fault: the connection carrying the next `afterBytes` bytes from the server is cut (both
   * sides destroyed) right after them, once. `fired()` tells whether it happened.
   */
  breakAfter: (afterBytes: number) => { fired: () => boolean }
  /** Connections accepted so far. */
  connections: () => number
}

/** A TCP proxy on 127.0.0.1 in front of `targetPort` that can cut a connection mid-transfer. */
export async function faultProxy (targetPort: number): Promise<FaultProxy> {
  let armed: { left: number, fired: boolean } | undefined
  let accepted = 0
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    accepted++
    const upstream = connect(targetPort, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => { client.destroy(); upstream.destroy() })
    }
    client.pipe(upstream)
    upstream.on('data', (data: Buffer) => {
      const fault = armed
      if (fault !== undefined && !fault.fired && data.length >= fault.left) {
        fault.fired = true
        armed = undefined
        client.write(data.subarray(0, fault.left), () => {
          client.destroy()
          upstream.destroy()
        })
        return
      }
      if (fault !== undefined) fault.left -= data.length
      if (!client.write(data)) {
        upstream.pause()
        client.once('drain', () => upstream.resume())
      }
    })
    upstream.on('end', () => client.end())
    client.on('end', () => upstream.end())
  })
  const base = await listen(server, () => { for (const s of sockets) s.destroy() })
  return {
    ...base,
    connections: () => accepted,
    breakAfter: afterBytes => {
      const fault = { left: afterBytes, fired: false }
      armed = fault
      return { fired: () => fault.fired }
    }
  }
}

/** Accepts connections and reads requests but never answers: every request to it must time out. */
export async function silentServer (): Promise<Listening> {
  const sockets = new Set<Socket>()
  const server = createServer(s => {
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    s.resume()
  })
  return await listen(server, () => { for (const s of sockets) s.destroy() })
}

async function listen (server: Server, beforeClose?: () => void): Promise<Listening> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as { port: number }).port
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      beforeClose?.()
      ;(server as Server & { closeAllConnections?: () => void }).closeAllConnections?.()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
