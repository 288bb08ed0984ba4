import { sendJson, type Route } from '../api/server.js'
import { UsageError } from '../errors.js'
import type { JobBoard } from '../node/job-board.js'
import type { Preheats } from '../swarm/preheat.js'
import type { UiSessions } from '../ui/ui-session.js'

export interface StatusRoutesOptions {
  jobs: JobBoard
  preheats: Preheats
  /** What `GET /v1/status` answers. */
  status: () => Promise<unknown>
  sessions: UiSessions
  /** Where a browser reaches the cluster page (`http://HOST:PORT`), when it can. */
  pageBase: () => string | undefined
}

/**
 * What the operator follows: `GET /v1/fetch` (fetches in flight, then recent ones), `GET /v1/preheat`
 * (preheats remembered, newest first), `GET /v1/status` (the node at a glance) and `POST
 * /v1/ui/session` (a short-lived URL of the cluster page, for `imgswarm ui`).
 */
export function statusRoutes (o: StatusRoutesOptions): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/v1\/fetch$/,
      handle: async (_req, res) => { sendJson(res, 200, o.jobs.list()) }
    },
    {
      method: 'GET',
      path: /^\/v1\/preheat$/,
      handle: async (_req, res) => { sendJson(res, 200, o.preheats.list().reverse()) }
    },
    {
      method: 'GET',
      path: /^\/v1\/status$/,
      handle: async (_req, res) => { sendJson(res, 200, await o.status()) }
    },
    {
      method: 'POST',
      path: /^\/v1\/ui\/session$/,
      handle: async (_req, res) => {
        const base = o.pageBase()
        if (base == null) throw new UsageError('the API is a unix socket, which a browser cannot open: start the daemon with --ui 127.0.0.1:PORT for the cluster page')
        const { token, expires } = o.sessions.loginToken()
        sendJson(res, 200, { url: `${base}/ui/?t=${token}`, expires: new Date(expires).toISOString() })
      }
    }
  ]
}
