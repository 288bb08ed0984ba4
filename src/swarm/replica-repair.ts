import { digestRef } from '../chunks/ref.js'
import { ImageNotFoundError } from '../errors.js'
import type { Fetcher } from '../fetch/fetcher.js'
import { imageCid } from '../peer/dht.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { askHolds } from './holds.js'
import { livePeers } from './live-peers.js'
import { POLICY } from './policy-protocol.js'
import { jittered } from './policy-sync.js'
import { rendezvousRank } from './rank.js'
import type { ReplicaPolicies } from './replica-policies.js'
import { deadline } from '../util/deadline.js'

/** How long one provider lookup may take. */
const LOOKUP_TIMEOUT_MS = 5_000

/** Rounds an image may stay short of its minimum before nodes beyond the chosen ones step in. */
const ESCALATE_AFTER = 3

/** Provider records read per lookup: more than any minimum a policy may ask for, bounded. */
const MAX_PROVIDERS = 128

/** What the last round saw of one policy's image. */
export interface ReplicaState {
  image: string
  min: number
  /** Live holders found (peer IDs), this node included when it holds the image or is fetching it. */
  holders: string[]
  /** Whether this node took the image on in that round. */
  fetching: boolean
  checked: string
}

export interface ReplicaRepairOptions {
  node: AnyLibp2p
  store: LevelStore
  fetcher: Fetcher
  policies: ReplicaPolicies
  /** Period of the repair rounds (± 25 %). */
  intervalMs: number
  log?: Logger
}

/**
 * Keeps every policy's image on at least `min` live nodes, decided on each node alone. A round
 * counts the live holders of each image: this node (from its store) and the DHT providers of the
 * image's CID that are connected imgswarm peers and confirm that they hold it; a provider that is
 * not connected (stopped, crashed) does not count, whatever its record says. When there are fewer than `min`, the live nodes that do
 * not hold it are ranked by rendezvous hash of (image, peer ID), and only the first `min − holders`
 * fetch it. Every node computes the same ranking from the same view, so exactly the missing number
 * of nodes step in, without coordination and without a stampede.
 */
export class ReplicaRepair {
  private readonly opts: ReplicaRepairOptions
  private readonly log: Logger
  private timer?: NodeJS.Timeout
  private stopped = false
  private running?: Promise<void>
  private readonly states = new Map<string, ReplicaState>()
  /** Rounds in a row that each image stayed short of its minimum. */
  private readonly shortRounds = new Map<string, number>()

  constructor (options: ReplicaRepairOptions) {
    this.opts = options
    this.log = options.log ?? silentLogger
  }

  start (): void {
    this.schedule()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }

  /** What the last round saw, by image. */
  state (hex: string): ReplicaState | undefined {
    const s = this.states.get(hex)
    return s != null ? { ...s, holders: [...s.holders] } : undefined
  }

  /** One round over every policy in force (a round already running is joined). */
  async round (): Promise<void> {
    this.running ??= this.runRound().finally(() => { this.running = undefined })
    await this.running
  }

  private schedule (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      void this.round().catch((err: unknown) => { this.log.warn('replica repair round failed', { err }) }).finally(() => { this.schedule() })
    }, jittered(this.opts.intervalMs))
    this.timer.unref()
  }

  private async runRound (): Promise<void> {
    const active = this.opts.policies.active()
    const activeSet = new Set(active.map(p => p.image))
    for (const hex of this.states.keys()) if (!activeSet.has(hex)) this.states.delete(hex)
    for (const hex of this.shortRounds.keys()) if (!activeSet.has(hex)) this.shortRounds.delete(hex)
    if (active.length === 0) return
    const { node } = this.opts
    const selfId = node.peerId.toString()
    const livePeerIds = await livePeers(node, POLICY.id)
    const live = new Set([selfId, ...livePeerIds.map(String)])
    const holders = await this.holders(active.map(p => p.image), live, livePeerIds)
    for (const policy of active) {
      if (this.stopped) return
      const held = holders.get(policy.image)!
      let fetching = false
      if (held.size >= policy.min) this.shortRounds.delete(policy.image)
      if (held.size < policy.min) {
        // A node that was chosen but cannot take the image (its cache is full, its fetch fails) would
        // hold the repair up for good: once the shortfall has lasted ESCALATE_AFTER rounds (time for
        // the chosen node's own round to start its fetch and announce it), one more node steps in
        // each round.
        const rounds = this.shortRounds.get(policy.image) ?? 0
        this.shortRounds.set(policy.image, rounds + 1)
        // At most `min` extra: when no node can get the image at all, not every node tries every round.
        const extra = Math.min(policy.min, Math.max(0, rounds - ESCALATE_AFTER + 1))
        const chosen = rendezvousRank(policy.image, [...live].filter(id => !held.has(id))).slice(0, policy.min - held.size + extra)
        if (chosen.includes(selfId)) {
          fetching = true
          this.log.info('taking on a replica', { image: digestRef(policy.image), min: policy.min, holders: held.size, live: live.size })
          const job = this.opts.fetcher.start(digestRef(policy.image))
          job.promise.catch((err: unknown) => { this.log.warn('replica fetch failed; the next round tries again', { image: digestRef(policy.image), err }) })
        }
      }
      this.states.set(policy.image, { image: policy.image, min: policy.min, holders: [...held].sort(), fetching, checked: new Date().toISOString() })
    }
  }

  /**
   * The live nodes that hold each image or are fetching it: this node from its store; a peer when
   * the DHT names it as a provider and it confirms (`/imgswarm/holds/1.0.0`), since a provider record
   * outlives a removal or a failed fetch. A peer that cannot answer is not counted: the worst case is
   * a spare copy, never a missing one.
   */
  private async holders (hexes: string[], live: Set<string>, peers: PeerId[]): Promise<Map<string, Set<string>>> {
    const selfId = this.opts.node.peerId.toString()
    const out = new Map<string, Set<string>>()
    const ask = new Map<string, string[]>()
    for (const hex of hexes) {
      const held = new Set<string>()
      if (await this.heldHere(hex)) held.add(selfId)
      out.set(hex, held)
      for (const id of await this.providers(hex)) {
        if (id === selfId || !live.has(id)) continue
        ask.set(id, [...(ask.get(id) ?? []), hex])
      }
    }
    await Promise.all([...ask].map(async ([id, asked]) => {
      const peer = peers.find(p => p.toString() === id)!
      try {
        const answer = await askHolds(this.opts.node, peer, asked)
        asked.forEach((hex, i) => { if (answer[i]) out.get(hex)!.add(id) })
      } catch (err) {
        this.log.debug('a provider did not confirm what it holds', { peer: id, err })
      }
    }))
    return out
  }

  /** The peer IDs the DHT names as providers of the image. */
  private async providers (hex: string): Promise<string[]> {
    const ids: string[] = []
    const d = deadline(LOOKUP_TIMEOUT_MS)
    try {
      for await (const provider of this.opts.node.contentRouting.findProviders(imageCid(hex), { signal: d.signal })) {
        ids.push(provider.id.toString())
        if (ids.length >= MAX_PROVIDERS) break
      }
    } catch (err) {
      // A lookup cut short still counts what it found; too few holders only means a spare copy.
      this.log.debug('provider lookup for a replica policy failed', { image: hex, err })
    } finally {
      d.clear()
    }
    return ids
  }

  /** Whether this node holds the image, or is fetching it (a fetch resumes after a restart). */
  private async heldHere (hex: string): Promise<boolean> {
    try {
      const record = await this.opts.store.resolve(digestRef(hex))
      return record.state === 'available' || record.state === 'fetching'
    } catch (err) {
      if (err instanceof ImageNotFoundError) return false
      throw err
    }
  }
}
