import { randomBytes } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { parseImageNaming } from '../chunks/ref.js'
import { ImageNotFoundError, UsageError } from '../errors.js'
import type { FetchJob } from '../fetch/fetch-job.js'
import type { Fetcher } from '../fetch/fetcher.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { livePeers } from './live-peers.js'
import { askPreheat } from './preheat-peer.js'
import { MAX_PREHEAT_REFS, PREHEAT, progressOf, type ImageProgress } from './preheat-protocol.js'
import { rendezvousRank } from './rank.js'
import { withDeadline } from '../util/deadline.js'

/** Preheats remembered for status queries; the oldest finished ones are forgotten first. */
const MAX_PREHEATS = 200

/** How long a named node that is not connected may take to be dialled before it is reported unreachable. */
const DIAL_TIMEOUT_MS = 10_000

/** Which nodes a preheat asks: every live node, N of them by rendezvous hashing, or named peers. */
export type NodeChoice = { kind: 'all' } | { kind: 'count', n: number } | { kind: 'peers', ids: string[] }

/**
 * Reads `--nodes` / the API's `nodes`: `"all"` (the default), a count, or peer IDs.
 * @throws UsageError for a count below 1, a mix of kinds, or text that is no peer ID
 */
export function parseNodeChoice (nodes: unknown): NodeChoice {
  const list = nodes == null ? ['all'] : Array.isArray(nodes) ? nodes : [nodes]
  if (list.length === 0 || list.length > 1024 || !list.every(v => typeof v === 'string' || typeof v === 'number')) throw new UsageError('nodes is "all", a count, or a list of peer IDs')
  const texts = list.map(String)
  if (texts.length === 1 && texts[0] === 'all') return { kind: 'all' }
  if (texts.length === 1 && /^\d+$/.test(texts[0])) {
    const n = Number(texts[0])
    if (n < 1) throw new UsageError('a preheat needs at least 1 node')
    return { kind: 'count', n }
  }
  for (const t of texts) {
    try {
      peerIdFromString(t)
    } catch {
      throw new UsageError(`nodes: "${t}" is neither "all", a count, nor a peer ID`)
    }
  }
  return { kind: 'peers', ids: [...new Set(texts)] }
}

export type NodeState = 'running' | 'done' | 'failed'

/** One node's part in a preheat. */
export interface NodePreheat {
  peerId: string
  self: boolean
  state: NodeState
  /** Why the node does not hold every image: unreachable, refused, or the images' own errors. */
  reason?: string
  images: ImageProgress[]
}

export interface PreheatStatus {
  id: string
  refs: string[]
  nodes: NodePreheat[]
  /** Problems with the choice itself, e.g. fewer live nodes than asked for. */
  problems: string[]
  done: boolean
  /** Done, every node holds every image it was asked for, and the choice had no problem. */
  ok: boolean
  started: string
  finished?: string
}

interface Running {
  status: PreheatStatus
  /** This node's fetch jobs, read live at each status query. */
  jobs?: FetchJob[]
  promise: Promise<void>
}

export interface PreheatsOptions {
  node: AnyLibp2p
  fetcher: Fetcher
  store: LevelStore
  log?: Logger
}

/**
 * Preheats started through this node's API: it picks the nodes, fetches its own share with its own
 * Fetcher, asks every other chosen node over `/imgswarm/preheat/1.0.0`, and keeps each node's
 * progress under an id for `GET /v1/preheat/{id}`.
 */
export class Preheats {
  private readonly runs = new Map<string, Running>()
  private readonly opts: PreheatsOptions
  private readonly log: Logger
  private readonly stopping = new AbortController()

  constructor (options: PreheatsOptions) {
    this.opts = options
    this.log = options.log ?? silentLogger
  }

  /**
   * Starts a preheat and returns its status at once.
   * @throws UsageError for no refs or more than 64; InvalidRefError; ImageNotFoundError for a prefix
   *   that matches no stored image
   */
  async start (refs: unknown, nodes: unknown): Promise<PreheatStatus> {
    if (!Array.isArray(refs) || refs.length === 0 || refs.length > MAX_PREHEAT_REFS || !refs.every(r => typeof r === 'string')) {
      throw new UsageError(`a preheat takes 1 to ${MAX_PREHEAT_REFS} refs`)
    }
    const choice = parseNodeChoice(nodes)
    const full = await Promise.all(refs.map(async r => await this.fullRef(r)))
    const unique = [...new Set(full.map(f => f.ref))]
    const keys = new Map(full.map(f => [f.ref, f.key]))
    const { targets, problems } = await this.choose(choice, unique, keys)
    const id = randomBytes(8).toString('hex')
    const status: PreheatStatus = {
      id,
      refs: unique,
      nodes: [...targets].map(([peerId, t]) => ({ peerId, self: t.self, state: 'running', images: t.refs.map(pending) })),
      problems,
      done: false,
      ok: false,
      started: new Date().toISOString()
    }
    const run: Running = { status, promise: Promise.resolve() }
    run.promise = Promise.all(status.nodes.map(async (n, i) => {
      const t = [...targets.values()][i]
      try {
        if (t.self) await this.runHere(run, n, t.refs)
        else await this.runThere(n, t.peer!, t.refs)
      } catch (err) {
        n.state = 'failed'
        n.reason = (err as Error).message
      }
    })).then(() => {
      status.done = true
      status.ok = problems.length === 0 && status.nodes.every(n => n.state === 'done')
      status.finished = new Date().toISOString()
      this.log.info('preheat finished', { id, ok: status.ok, nodes: status.nodes.map(n => ({ peer: n.peerId, state: n.state, reason: n.reason })) })
    })
    this.runs.set(id, run)
    this.forgetOld()
    return this.status(id)!
  }

  /** A preheat's status, with this node's own progress read live; undefined for an unknown id. */
  status (id: string): PreheatStatus | undefined {
    const run = this.runs.get(id)
    if (run == null) return undefined
    const self = run.status.nodes.find(n => n.self)
    if (self != null && run.jobs != null && self.state === 'running') self.images = run.jobs.map(j => progressOf(j.status))
    return structuredClone(run.status)
  }

  /** Every preheat remembered, oldest first, with this node's own progress read live. */
  list (): PreheatStatus[] {
    return [...this.runs.keys()].map(id => this.status(id)!)
  }

  /** Waits for a preheat to end. */
  async wait (id: string): Promise<void> {
    await this.runs.get(id)?.promise
  }

  /** Stops asking peers (their fetches go on) and reporting. */
  stop (): void {
    this.stopping.abort()
  }

  private async runHere (run: Running, n: NodePreheat, refs: string[]): Promise<void> {
    const jobs = refs.map(r => this.opts.fetcher.start(r))
    run.jobs = jobs
    await Promise.allSettled(jobs.map(async j => { await j.promise }))
    finish(n, jobs.map(j => progressOf(j.status)))
  }

  private async runThere (n: NodePreheat, peer: PeerId, refs: string[]): Promise<void> {
    const { node } = this.opts
    if (node.getConnections(peer).length === 0) {
      await withDeadline(DIAL_TIMEOUT_MS, this.stopping.signal, async signal => await node.dial(peer, { signal })).catch((err: unknown) => {
        throw new Error(`cannot reach the node: ${(err as Error).message}`)
      })
    }
    const images = await askPreheat(node, peer, refs, images => { n.images = images }, { signal: this.stopping.signal })
    finish(n, images)
  }

  /** A ref as sent to peers (a prefix is resolved here) and the key its nodes are ranked by. */
  private async fullRef (text: string): Promise<{ ref: string, key: string }> {
    const ref = parseImageNaming(text)
    if (ref.kind === 'digest') return { ref: `sha256:${ref.hex}`, key: ref.hex }
    const record = await this.opts.store.resolve(text).catch((err: unknown) => {
      if (err instanceof ImageNotFoundError && ref.kind === 'manifest') return undefined
      throw err
    })
    if (record != null) return { ref: record.ref, key: record.ref.slice(7) }
    // A manifest CID this node has never seen: peers may know it; rank by the CID.
    const cid = (ref as { cid: { toString: () => string } }).cid.toString()
    return { ref: cid, key: cid }
  }

  private async choose (choice: NodeChoice, refs: string[], keys: Map<string, string>): Promise<{ targets: Map<string, { self: boolean, peer?: PeerId, refs: string[] }>, problems: string[] }> {
    const { node } = this.opts
    const selfId = node.peerId.toString()
    const targets = new Map<string, { self: boolean, peer?: PeerId, refs: string[] }>()
    const problems: string[] = []
    const add = (id: string, peer: PeerId | undefined, ref: string): void => {
      const t = targets.get(id) ?? { self: id === selfId, peer, refs: [] }
      if (!t.refs.includes(ref)) t.refs.push(ref)
      targets.set(id, t)
    }
    if (choice.kind === 'peers') {
      for (const id of choice.ids) for (const r of refs) add(id, id === selfId ? undefined : peerIdFromString(id), r)
      return { targets, problems }
    }
    const live = await livePeers(node, PREHEAT.id)
    const byId = new Map(live.map(p => [p.toString(), p]))
    const ids = [selfId, ...byId.keys()]
    if (choice.kind === 'count' && choice.n > ids.length) problems.push(`asked for ${choice.n} nodes, but only ${ids.length} are live (this node and ${ids.length - 1} connected peers)`)
    for (const r of refs) {
      const chosen = choice.kind === 'all' ? ids : rendezvousRank(keys.get(r)!, ids).slice(0, choice.n)
      for (const id of chosen) add(id, byId.get(id), r)
    }
    return { targets, problems }
  }

  private forgetOld (): void {
    for (const [id, run] of this.runs) {
      if (this.runs.size <= MAX_PREHEATS) break
      if (run.status.done) this.runs.delete(id)
    }
  }
}

function pending (ref: string): ImageProgress {
  return { ref, state: 'resolving', bytes: { local: 0, peer: 0, origin: 0 } }
}

/** A node's final state from its images' outcomes. */
function finish (n: NodePreheat, images: ImageProgress[]): void {
  n.images = images
  const failed = images.filter(i => i.state !== 'available')
  n.state = failed.length === 0 ? 'done' : 'failed'
  if (failed.length > 0) n.reason = failed.map(i => `${i.ref}: ${i.error ?? i.state}`).join('; ')
}
