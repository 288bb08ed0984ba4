import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { sendJson, type Route } from '../api/server.js'
import type { Logger } from '../util/log.js'
import type { ClusterView } from './cluster-view.js'
import { renderPage } from './page.js'
import type { UiSessions } from './ui-session.js'

/** Most pages open at once; each holds an event stream. */
export const MAX_VIEWERS = 32
/** How often an open page gets the whole state. */
const STATE_EVERY_MS = 1_000

/** The page's script and style, shipped in the package (src/ui/static), read once. */
const STATIC_DIR = new URL('../../../src/ui/static/', import.meta.url)
const ASSETS: Record<string, { type: string, body: Buffer }> = {
  'app.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(new URL('app.js', STATIC_DIR)) },
  'app.css': { type: 'text/css; charset=utf-8', body: readFileSync(new URL('app.css', STATIC_DIR)) },
  'favicon.svg': { type: 'image/svg+xml', body: readFileSync(new URL('favicon.svg', STATIC_DIR)) }
}

/** Every answer under /ui/: nothing from elsewhere, no framing, no referrer (a login URL carries a token). */
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store'
}

export interface UiRoutesOptions {
  view: ClusterView
  sessions: UiSessions
  /** The page is served over HTTPS: the cookie is marked Secure. */
  secure: boolean
  log: Logger
  /** Aborted when the daemon stops: open event streams end at once. */
  signal: AbortSignal
}

/**
 * The cluster page: `GET /` (redirects to it), `GET /ui/` (the HTML; `?t=TOKEN` from `imgswarm ui` trades the token for a
 * session cookie), `/ui/app.js`, `/ui/app.css`, `/ui/state` (the state as JSON) and `/ui/events`
 * (server-sent events: `state` each second, `image` on each image event). Read-only: GET only. A
 * session cookie lets a browser in; without one the API's own access rules decide.
 */
export function uiRoutes (options: UiRoutesOptions): Route[] {
  const { view, sessions } = options
  const grant = (req: IncomingMessage, url: URL): boolean => sessions.hasSession(req) || (url.pathname === '/ui/' && sessions.validLogin(url.searchParams.get('t')))
  let viewers = 0
  return [
    {
      // A browser pointed at the node's address finds the page; a session lets it in as it does the page.
      method: 'GET',
      path: /^\/$/,
      grant: req => sessions.hasSession(req),
      handle: async (_req, res) => {
        res.writeHead(302, { location: '/ui/', 'content-type': 'text/html; charset=utf-8', ...PAGE_HEADERS })
        res.end('<!doctype html><title>imgswarm</title><p><a href="/ui/">The cluster page</a></p>')
      }
    },
    {
      method: 'GET',
      path: /^\/ui$/,
      handle: async (_req, res) => {
        res.writeHead(301, { location: '/ui/', ...PAGE_HEADERS })
        res.end()
      }
    },
    {
      method: 'GET',
      path: /^\/ui\/$/,
      // A token that does not check out is refused here, not passed on to the API's rules.
      grant: (req, url) => grant(req, url) || url.searchParams.has('t'),
      handle: async (_req, res, _m, url) => {
        const token = url.searchParams.get('t')
        if (token != null) {
          if (!sessions.validLogin(token)) {
            sendPage(res, 403, '<!doctype html><title>imgswarm: link expired</title><p>This link has expired or belongs to another run of the daemon. Run <code>imgswarm ui</code> again for a new one.</p>')
            return
          }
          res.writeHead(303, { location: '/ui/', 'set-cookie': sessions.sessionCookie(options.secure), ...PAGE_HEADERS })
          res.end()
          return
        }
        const release = await view.watch(() => {})
        try {
          sendPage(res, 200, renderPage(await view.state()))
        } finally {
          release()
        }
      }
    },
    {
      method: 'GET',
      path: /^\/ui\/(app\.js|app\.css|favicon\.svg)$/,
      grant,
      handle: async (_req, res, m) => {
        const asset = ASSETS[m[1]]
        res.writeHead(200, { 'content-type': asset.type, 'content-length': asset.body.length, ...PAGE_HEADERS })
        res.end(asset.body)
      }
    },
    {
      method: 'GET',
      path: /^\/ui\/state$/,
      grant,
      handle: async (_req, res) => {
        const release = await view.watch(() => {})
        try {
          sendJson(res, 200, await view.state())
        } finally {
          release()
        }
      }
    },
    {
      method: 'GET',
      path: /^\/ui\/events$/,
      grant,
      handle: async (_req, res) => {
        if (viewers >= MAX_VIEWERS) {
          sendJson(res, 503, { error: { code: 'IMGSWARM_USAGE', message: `the page has ${MAX_VIEWERS} viewers already; close one` } })
          return
        }
        viewers++
        const stream: { closed: boolean, timer?: NodeJS.Timeout, release?: () => void } = { closed: false }
        const close = (): void => {
          if (stream.closed) return
          stream.closed = true
          viewers--
          clearInterval(stream.timer)
          stream.release?.()
        }
        const onStop = (): void => { close(); res.end() }
        options.signal.addEventListener('abort', onStop, { once: true })
        res.once('close', () => {
          options.signal.removeEventListener('abort', onStop)
          close()
        })
        res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'keep-alive', ...PAGE_HEADERS })
        const send = (event: string, data: unknown): void => {
          if (!stream.closed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
        }
        let sending = false
        const sendState = async (): Promise<void> => {
          if (sending || stream.closed) return // a slow state read skips a beat rather than piling up
          sending = true
          try {
            send('state', await view.state())
          } catch (err) {
            options.log.warn('the page\'s state could not be read', { err })
          } finally {
            sending = false
          }
        }
        const release = await view.watch(e => { send('image', { kind: e.kind, time: e.time, ref: e.record.ref, name: e.record.name, state: e.record.state }) })
        if (stream.closed) {
          release()
          return
        }
        stream.release = release
        await sendState()
        if (!stream.closed) stream.timer = setInterval(() => { void sendState() }, STATE_EVERY_MS)
      }
    }
  ]
}

function sendPage (res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html), ...PAGE_HEADERS })
  res.end(html)
}
