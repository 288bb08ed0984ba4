import { setMaxListeners } from 'node:events'
import { hostname } from 'node:os'
import type { ApiAccess } from '../api/access.js'
import { formatApiAddress, type ApiAddress } from '../api/address.js'
import type { Route } from '../api/server.js'
import type { CacheReport } from '../cache/evictor.js'
import type { FetchObserver } from '../fetch/fetcher.js'
import type { LocalNode } from '../local-node.js'
import { packageVersion } from '../util/version.js'
import type { ImageEvents } from '../node/image-events.js'
import type { JobBoard } from '../node/job-board.js'
import type { Throughput } from '../node/throughput.js'
import type { PeerLimits } from '../peer/peer-limits.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import type { Swarm } from '../swarm/swarm.js'
import type { Logger } from '../util/log.js'
import { ClusterView } from '../ui/cluster-view.js'
import { MAX_NAME_LENGTH, MAX_SUMMARY_IMAGES, MAX_SUMMARY_JOBS, type NodeSummary } from '../ui/node-summary.js'
import { serveSummary } from '../ui/summary-protocol.js'
import { MAX_VIEWERS, uiRoutes } from '../ui/ui-routes.js'
import { startUiServer, type UiServer } from '../ui/ui-server.js'
import { UiSessions } from '../ui/ui-session.js'
import { statusRoutes } from './status-routes.js'

/** How long the store's use (a survey of every record) is reused between summaries. */
const STORE_REPORT_TTL_MS = 2_000

export interface OperatorViewOptions {
  name?: string
  /** `--ui ADDR`: the page's own loopback port, for an API on a unix socket. */
  ui?: string
  node: AnyLibp2p
  local: LocalNode
  swarm: Swarm
  jobs: JobBoard
  events: ImageEvents
  throughput: Throughput
  member: (peer: PeerId) => boolean
  limits?: PeerLimits
  log: Logger
  /** The node's own status fields (API, readiness, origin) for `GET /v1/status`. */
  nodeStatus: () => Record<string, unknown>
}

/**
 * What an operator sees of a node: its summary (served to cluster members over
 * `/imgswarm/node-summary/1.0.0`), the job and status routes, and the cluster page (on the API, or on
 * `--ui ADDR`).
 */
export class OperatorView {
  readonly name: string
  readonly startedAt = Date.now()
  readonly sessions = new UiSessions()
  readonly view: ClusterView
  private readonly opts: OperatorViewOptions
  private report?: { at: number, value: Promise<CacheReport> }
  private pageBase?: string
  private uiServer?: UiServer
  private readonly stopping = new AbortController()

  private constructor (options: OperatorViewOptions) {
    this.opts = options
    this.name = (options.name ?? hostname()).slice(0, MAX_NAME_LENGTH)
    // Each open page's event stream listens for the stop (two servers may each hold MAX_VIEWERS).
    setMaxListeners(2 * MAX_VIEWERS + 4, this.stopping.signal)
    this.view = new ClusterView({
      node: options.node,
      summary: async () => await this.summary(),
      images: async () => await options.local.list(),
      jobs: options.jobs,
      preheats: () => options.swarm.preheats.list(),
      events: options.events,
      throughput: options.throughput,
      log: options.log
    })
  }

  static async start (options: OperatorViewOptions): Promise<OperatorView> {
    const v = new OperatorView(options)
    await serveSummary(options.node, async () => await v.summary(), { member: options.member, log: options.log, limits: options.limits })
    return v
  }

  /** The page's routes and the job and status routes, for the API. */
  routes (secure: boolean): Route[] {
    const page = uiRoutes({ view: this.view, sessions: this.sessions, secure, log: this.opts.log, signal: this.stopping.signal })
    return [...page, ...statusRoutes({
      jobs: this.opts.jobs,
      preheats: this.opts.swarm.preheats,
      status: async () => await this.status(),
      sessions: this.sessions,
      pageBase: () => this.pageBase
    })]
  }

  /** Where the page is: the API's address when that is TCP, else its own port (`--ui`). */
  async listen (api: ApiAddress, access: ApiAccess | undefined, onError: (err: unknown) => void): Promise<void> {
    if (this.opts.ui != null) {
      this.uiServer = await startUiServer(this.opts.ui, uiRoutes({ view: this.view, sessions: this.sessions, secure: false, log: this.opts.log, signal: this.stopping.signal }), access, onError)
      this.pageBase = this.uiServer.url
    } else if (api.kind === 'tcp') {
      const host = api.host === '0.0.0.0' || api.host === '::' ? hostname() : api.host
      this.pageBase = formatApiAddress({ ...api, host })
    }
  }

  /** The page's address without a token (`http://127.0.0.1:PORT`), when there is one. */
  get pageUrl (): string | undefined {
    return this.pageBase != null ? `${this.pageBase}/ui/` : undefined
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    this.view.stop()
    this.opts.jobs.stop()
    await this.uiServer?.close()
  }

  private async storeReport (): Promise<CacheReport> {
    const now = Date.now()
    if (this.report == null || now - this.report.at > STORE_REPORT_TTL_MS) {
      const value = this.opts.local.df()
      value.catch(() => { this.report = undefined })
      this.report = { at: now, value }
    }
    return await this.report.value
  }

  /** This node as other nodes' pages and its own see it. */
  async summary (): Promise<NodeSummary> {
    const { node, local, jobs, throughput } = this.opts
    const report = await this.storeReport()
    const held = (await local.store.listImages()).filter(r => r.state === 'available').map(r => r.ref.slice(7))
    const last = throughput.series().at(-1)
    return {
      name: this.name,
      peerId: node.peerId.toString(),
      version: packageVersion(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      store: { used: report.used, cap: report.cap, images: report.images },
      peers: node.getConnections().length,
      held: held.slice(0, MAX_SUMMARY_IMAGES),
      heldOmitted: Math.max(0, held.length - MAX_SUMMARY_IMAGES),
      jobs: jobs.current().slice(0, MAX_SUMMARY_JOBS).map(j => ({
        ref: j.ref,
        ...(j.image != null ? { image: j.image } : {}),
        ...(j.name != null ? { name: j.name.slice(0, 200) } : {}),
        state: j.state,
        size: j.size,
        percent: j.percent,
        bytes: j.bytes,
        rate: j.rate,
        etaSeconds: j.etaSeconds
      })),
      rate: { peer: last?.peer ?? 0, origin: last?.origin ?? 0, served: last?.served ?? 0 }
    }
  }

  /** `GET /v1/status`: version, uptime, store use and cap (the figures `df` gives), active fetches. */
  async status (): Promise<Record<string, unknown>> {
    const report = await this.opts.local.df()
    const current = this.opts.jobs.current()
    return {
      name: this.name,
      version: packageVersion(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      ...this.opts.nodeStatus(),
      ui: this.pageUrl ?? null,
      images: report.images,
      store: { used: report.used, cap: report.cap, images: report.images, disk: report.disk },
      fetches: { active: current.length, jobs: current }
    }
  }
}

/** The fetcher's metric hooks, also counting peer and origin bytes into the throughput chart. */
export function withThroughput (observer: FetchObserver, throughput: Throughput): FetchObserver {
  return {
    ...observer,
    received: (source, bytes) => {
      observer.received(source, bytes)
      if (source !== 'local') throughput.add(source, bytes)
    }
  }
}
