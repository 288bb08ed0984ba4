import type { FetchSource } from '../fetch/fetch-job.js'
import type { ImageListing } from '../local-node.js'
import type { ImageEvent, ImageEvents } from '../node/image-events.js'
import type { JobView } from '../node/job-board.js'
import type { Throughput, ThroughputPoint } from '../node/throughput.js'
import type { AnyLibp2p } from '../peer/types.js'
import type { PreheatStatus } from '../swarm/preheat.js'
import { livePeers } from '../swarm/live-peers.js'
import type { Logger } from '../util/log.js'
import type { NodeSummary } from './node-summary.js'
import { askSummary, NODE_SUMMARY } from './summary-protocol.js'

/** Most other nodes asked for their summary each round. */
const MAX_NODES = 32
/** How often other nodes are asked, while someone watches. */
const NODES_EVERY_MS = 2_000
/** How often the image list is read again for what no event says (pins, leases), while someone watches. */
const IMAGES_EVERY_MS = 10_000
/** Most images the page lists (the most recently used first). */
const MAX_IMAGES = 500
/** Finished fetches and preheats the page shows. */
const MAX_RECENT = 10

/** One image as the page lists it. */
export interface ImageRow {
  ref: string
  name: string
  type: string
  state: string
  size: number
  pinned: boolean
  leasedBy: string[]
  /** Names (or short peer IDs) of the nodes that hold it available, this one included. */
  holders: string[]
  /** Where its bytes came from (stored), or have come from so far (fetching). */
  bytes: Record<FetchSource, number> | null
  percent?: number
  reason?: string
}

/** A node the page could not read. */
export interface UnreachableNode {
  peerId: string
  name?: string
  error: string
}

/** Everything the page shows, sent on each update. */
export interface PageState {
  time: string
  self: NodeSummary
  nodes: Array<NodeSummary | UnreachableNode>
  images: ImageRow[]
  imagesOmitted: number
  jobs: JobView[]
  preheats: PreheatStatus[]
  throughput: ThroughputPoint[]
}

export interface ClusterViewOptions {
  node: AnyLibp2p
  summary: () => Promise<NodeSummary>
  images: () => Promise<ImageListing[]>
  jobs: { list: () => JobView[] }
  preheats: () => PreheatStatus[]
  events: ImageEvents
  throughput: Throughput
  log: Logger
}

/**
 * The cluster as this node's page shows it. Other nodes are asked for their summaries over the
 * cluster's own protocol, and the image list is read again when an image event says it changed;
 * both only while at least one page watches (see {@link ClusterView.watch}).
 */
export class ClusterView {
  private readonly opts: ClusterViewOptions
  private watchers = 0
  private nodes: Array<NodeSummary | UnreachableNode> = []
  private imageList: ImageListing[] = []
  private timers: NodeJS.Timeout[] = []
  private stopEvents?: () => void
  private refreshing?: Promise<void>
  private refreshAgain = false

  constructor (options: ClusterViewOptions) {
    this.opts = options
  }

  /**
   * Starts the background reads for one more watcher; call the returned function when it leaves.
   * `onEvent` is told of each image event as it happens.
   */
  async watch (onEvent: (e: ImageEvent) => void): Promise<() => void> {
    const unsubscribe = this.opts.events.subscribe(onEvent)
    if (this.watchers++ === 0) {
      this.stopEvents = this.opts.events.subscribe(() => { void this.refreshImages() })
      this.timers = [
        setInterval(() => { void this.refreshNodes() }, NODES_EVERY_MS).unref(),
        setInterval(() => { void this.refreshImages() }, IMAGES_EVERY_MS).unref()
      ]
      await Promise.all([this.refreshNodes(), this.refreshImages()])
    }
    let left = false
    return () => {
      if (left) return
      left = true
      unsubscribe()
      if (--this.watchers === 0) this.stop()
    }
  }

  stop (): void {
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    this.stopEvents?.()
    this.stopEvents = undefined
  }

  /** The page's state now. The image list and other nodes are as last read (see {@link watch}). */
  async state (): Promise<PageState> {
    const self = await this.opts.summary()
    const all = [self, ...this.nodes]
    const nameOf = new Map(all.map(n => [n.peerId, 'name' in n && n.name !== '' && n.name != null ? n.name : n.peerId.slice(-8)]))
    const holders = new Map<string, string[]>()
    for (const n of all) {
      if (!('held' in n)) continue
      for (const h of n.held) holders.set(h, [...holders.get(h) ?? [], nameOf.get(n.peerId)!])
    }
    const jobs = this.opts.jobs.list()
    const live = new Map(jobs.filter(j => j.finished == null && j.image != null).map(j => [j.image!, j]))
    const sorted = [...this.imageList].sort((a, b) => b.lastAccess.localeCompare(a.lastAccess))
    const images = sorted.slice(0, MAX_IMAGES).map(r => {
      const hex = r.ref.slice(7)
      const job = live.get(r.ref)
      const row: ImageRow = {
        ref: r.ref,
        name: r.name,
        type: r.type,
        state: r.state,
        size: r.size,
        pinned: r.pinned,
        leasedBy: r.leasedBy,
        holders: holders.get(hex) ?? [],
        bytes: job != null ? job.bytes : r.sources != null ? { local: r.sources.local, peer: r.sources.peers, origin: r.sources.origin } : null
      }
      if (job?.percent != null) row.percent = job.percent
      if (r.reason != null) row.reason = r.reason
      return row
    })
    const current = jobs.filter(j => j.finished == null)
    const finished = jobs.filter(j => j.finished != null).slice(0, MAX_RECENT)
    const preheats = this.opts.preheats().slice(-MAX_RECENT).reverse().map(p => ({
      ...p,
      nodes: p.nodes.map(n => ({ ...n, name: nameOf.get(n.peerId) }))
    }))
    return {
      time: new Date().toISOString(),
      self,
      nodes: this.nodes,
      images,
      imagesOmitted: Math.max(0, sorted.length - MAX_IMAGES),
      jobs: [...current, ...finished],
      preheats,
      throughput: this.opts.throughput.series()
    }
  }

  private async refreshNodes (): Promise<void> {
    const { node } = this.opts
    const peers = (await livePeers(node, NODE_SUMMARY.id)).slice(0, MAX_NODES)
    this.nodes = await Promise.all(peers.map(async p => await askSummary(node, p).catch((err: unknown): UnreachableNode => {
      const before = this.nodes.find(n => n.peerId === p.toString())
      return { peerId: p.toString(), name: before?.name, error: (err as Error).message }
    })))
  }

  /** Reads the image list again; calls during a read make one more read after it. */
  private async refreshImages (): Promise<void> {
    if (this.refreshing != null) {
      this.refreshAgain = true
      return await this.refreshing
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false
        this.imageList = await this.opts.images().catch(err => {
          this.opts.log.warn('the page could not list images', { err })
          return this.imageList
        })
      } while (this.refreshAgain)
    })()
    try {
      await this.refreshing
    } finally {
      this.refreshing = undefined
    }
  }
}
