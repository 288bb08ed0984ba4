import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { parseApiAddress } from '../api/address.js'
import type { ApiAccess } from '../api/access.js'
import { errorBody, statusOf } from '../api/http-errors.js'
import { sendJson, type Route } from '../api/server.js'
import { UsageError } from '../errors.js'

export interface UiServer {
  /** The bound address, `http://127.0.0.1:PORT`. */
  url: string
  close: () => Promise<void>
}

/**
 * The cluster page on a loopback port of its own (`--ui ADDR`), for a daemon whose API is a unix
 * socket that a browser cannot reach. It serves the page's routes only; a request without the
 * page's session is checked by the API's access rules.
 * @throws UsageError for an address that is not a loopback HOST:PORT
 */
export async function startUiServer (address: string, routes: Route[], access: ApiAccess | undefined, onError: (err: unknown) => void): Promise<UiServer> {
  const a = parseApiAddress(address)
  if (a.kind !== 'tcp' || a.tls === true || !(a.host.startsWith('127.') || a.host === '::1' || a.host === 'localhost')) {
    throw new UsageError(`--ui takes a loopback HOST:PORT such as 127.0.0.1:7481, not "${address}"`)
  }
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://imgswarm')
    const route = routes.find(r => r.method === req.method && r.path.test(url.pathname))
    if (route == null) {
      sendJson(res, 404, { error: { code: 'IMGSWARM_USAGE', message: `no route ${req.method ?? ''} ${url.pathname} (this port serves the cluster page only, at /ui/)` } })
      return
    }
    if (route.grant?.(req, url) !== true) await access?.check(req, url.pathname, 'tcp')
    await route.handle(req, res, route.path.exec(url.pathname)!, url)
  }
  const server = createServer((req, res) => {
    serve(req, res).catch(err => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      const status = statusOf(err)
      if (status >= 500) onError(err)
      sendJson(res, status, errorBody(err))
    })
  })
  server.keepAliveTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(a.port, a.host, resolve)
  })
  const bound = server.address()
  const port = bound != null && typeof bound === 'object' ? bound.port : a.port
  return {
    url: `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${port}`,
    close: async () => {
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      server.closeAllConnections() // page event streams never end by themselves
      await closed
    }
  }
}
