import { CLAIMS_SPACING_MS, Candidates, type CandidateClaim, type DirectCandidate } from './candidates.js'
import { hasBit, setBit, type PeerSource } from './sources.js'
import { realClock, type Clock } from './clock.js'

/** Origin-read candidates kept per image unless the fetch asks for another number (see Candidates). */
export const DEFAULT_CANDIDATES = 32
/** When a candidate is taken for stalled unless the fetch says otherwise (the swarm's stallMs). */
const DEFAULT_STALL_MS = 5000

/** What this node knows of one peer's chunks of an image, kept current by its pushed updates (or polls). */
export interface PeerView {
  source: PeerSource
  /** The peer's have-bitfield as last heard. */
  have: Uint8Array
  /** The peer is fetching the image now (it shares the origin reads). */
  fetching: boolean
  /** When the peer last gained a chunk (or was first heard of): a peer fetching with no gain for long is stalled. */
  lastGain: number
  /** Its stream is open (pushed) or it is polled; false once either ended. */
  live: boolean
  /** Chunks it holds: the bits set in `have`. */
  held: number
}

/**
 * What a have-feed's subscriber is told: this node's new chunks, the end of its fetch, counts of
 * candidates that rose ('claims': told on the next beat), or a candidate not known before ('candidates': told soon).
 */
export type FeedEvent = number[] | 'end' | 'claims' | 'candidates'

/** One local image being fetched: its have-bitfield, its updates to neighbours, and what they hold. */
export class HaveFeed {
  readonly peers = new Map<string, PeerView>()
  /** Undefined while fetching; true once the image is complete, false when its fetch failed. */
  outcome: boolean | undefined
  /** When this node last heard of a fetching node it did not know (a candidate, or a peer that fetches). */
  newsAt = -Infinity
  /**
   * When a fetching peer was last heard to gain each chunk (-Infinity: never): a chunk this node lacks
   * that another gained lately says that someone is reading its origin group now.
   */
  readonly gainedAt: Float64Array
  /** This node's id once its fetch runs: it is one of the candidates it tells of. */
  private self: string | undefined
  private candidates: Candidates
  private readonly listeners = new Set<(event: FeedEvent) => void>()
  private waiters: Array<() => void> = []
  private selfHeld: number | undefined
  /** How long a candidate's count may stay still before it is taken for stalled. */
  private stallMs = DEFAULT_STALL_MS
  /** Bumped at every change that may move the candidates: they are ranked once per version. */
  private version = 0
  private ranked: { version: number, at: number, claims: CandidateClaim[] } | undefined

  /** `bits` is the fetch's own bitfield (shared, not copied): it is current whenever it is read. */
  constructor (readonly manifestCid: string, readonly chunkCount: number, readonly bits: Uint8Array, readonly clock: Clock = realClock) {
    this.candidates = new Candidates(manifestCid, chunkCount, DEFAULT_CANDIDATES)
    this.gainedAt = new Float64Array(chunkCount).fill(-Infinity)
  }

  /** The fetch that runs on this feed: its node's id, how many candidates it keeps, and when one is stalled. */
  runAs (self: string, candidates = DEFAULT_CANDIDATES, stallMs = DEFAULT_STALL_MS): void {
    this.self = self
    this.stallMs = stallMs
    this.version++
    if (candidates !== this.candidates.limit) this.candidates = new Candidates(this.manifestCid, this.chunkCount, candidates)
  }

  /** Chunks now stored here: told to every neighbour subscribed. */
  stored (indices: number[]): void {
    this.selfHeld = undefined
    this.version++
    for (const l of this.listeners) l(indices)
  }

  /**
   * The best live candidates this node knows (see Candidates.best): told to its neighbours, and the
   * nodes among which it shares out the origin groups. Ranked again at each change, or when a stall
   * may have become due.
   */
  claims (): CandidateClaim[] {
    const now = this.clock.now()
    if (this.ranked?.version !== this.version || now - this.ranked.at >= CLAIMS_SPACING_MS) {
      this.ranked = { version: this.version, at: now, claims: this.candidates.best(this.direct(), now, this.stallMs, this.self) }
    }
    return this.ranked.claims
  }

  /** A neighbour's candidates: kept, and passed on if they change what this node knows. */
  hearClaims (claims: readonly CandidateClaim[]): void {
    const heard = this.candidates.hear(claims, this.clock.now(), this.self)
    if (heard != null) this.tell(heard === 'new' ? 'candidates' : 'claims')
  }

  /** This node (counted live now) and the fetching peers it watches. */
  private direct (): DirectCandidate[] {
    const now = this.clock.now()
    const out = [...this.peers.values()].filter(v => v.fetching && v.live).map(v => ({ id: v.source.id, held: v.held, risenAt: v.lastGain }))
    if (this.self != null) {
      this.selfHeld ??= countBits(this.bits, this.chunkCount)
      out.push({ id: this.self, held: this.selfHeld, risenAt: now })
    }
    return out
  }

  private tell (event: FeedEvent): void {
    this.version++
    if (event === 'candidates') this.newsAt = this.clock.now()
    for (const l of [...this.listeners]) l(event)
  }

  /** The fetch ended: subscribers send "complete" (or just close) and stop. */
  end (complete: boolean): void {
    if (this.outcome !== undefined) return
    this.outcome = complete
    this.tell('end')
    this.changed()
  }

  /** Listens for this node's new chunks and news of candidates; returns the unsubscribe function. */
  subscribe (listener: (event: FeedEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** A peer's whole bitfield (first heard, or polled again). */
  setPeer (source: PeerSource, have: Uint8Array, fetching: boolean): PeerView {
    const old = this.peers.get(source.id)
    const gained = old == null || have.some((b, i) => (b & ~(old.have[i] ?? 0)) !== 0)
    if (fetching && gained) {
      // What a fetching peer holds that it did not before (or at all, first heard): gained about now.
      // A byte at a time: a polled peer of the previous release sends its whole bitfield 4 times a second.
      const now = this.clock.now()
      for (let j = 0; j < have.length; j++) {
        const fresh = have[j] & ~(old?.have[j] ?? 0)
        if (fresh === 0) continue
        for (let b = 0; b < 8; b++) if ((fresh & (0x80 >> b)) !== 0 && j * 8 + b < this.chunkCount) this.gainedAt[j * 8 + b] = now
      }
    }
    const view: PeerView = { source, have: Uint8Array.from(have), fetching, lastGain: gained || old == null ? this.clock.now() : old.lastGain, live: true, held: countBits(have, this.chunkCount) }
    this.peers.set(source.id, view)
    this.changed()
    this.tell(old == null && fetching ? 'candidates' : 'claims')
    return view
  }

  /** A peer newly holds these chunk indices. */
  gained (peer: string, runs: Array<[number, number]>): void {
    const view = this.peers.get(peer)
    if (view == null) return
    const now = this.clock.now()
    for (const [start, length] of runs) {
      for (let i = start; i < start + length; i++) {
        if (hasBit(view.have, i)) continue
        setBit(view.have, i)
        view.held++
        if (view.fetching) this.gainedAt[i] = now
      }
    }
    if (runs.length > 0) {
      view.lastGain = now
      this.changed()
      if (view.fetching) this.tell('claims')
    }
  }

  /** A peer holds every chunk and is done fetching. */
  peerComplete (peer: string): void {
    const view = this.peers.get(peer)
    if (view == null) return
    view.have.fill(0xff)
    const spare = view.have.length * 8 - this.chunkCount
    if (spare > 0) view.have[view.have.length - 1] &= 0xff << spare
    view.held = this.chunkCount
    view.fetching = false
    this.version++
    view.lastGain = this.clock.now()
    this.changed()
  }

  /** A peer's stream ended: a complete peer stays a holder; one that was fetching is forgotten (it failed or left). */
  peerGone (peer: string, source?: PeerSource): void {
    const view = this.peers.get(peer)
    if (view == null || (source != null && view.source !== source)) return
    if (view.fetching) this.peers.delete(peer)
    else view.live = false
    this.version++
    this.changed()
  }

  /** Resolves at the next change of any peer's view, or after `ms`. */
  async nextChange (ms: number, signal?: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const wake = (): void => {
        this.clock.clearTimer(timer)
        signal?.removeEventListener('abort', wake)
        this.waiters = this.waiters.filter(w => w !== wake)
        resolve()
      }
      const timer = this.clock.setTimer(wake, ms)
      signal?.addEventListener('abort', wake, { once: true })
      this.waiters.push(wake)
    })
  }

  private changed (): void {
    const w = this.waiters
    this.waiters = []
    for (const wake of w) wake()
  }
}

/** Bits set in each byte value. */
const BITS_IN = Uint8Array.from({ length: 256 }, (_, b) => { let n = 0; for (let x = b; x !== 0; x >>= 1) n += x & 1; return n })

/** Bits set among the first `n` of a bitfield, a byte at a time. */
function countBits (bits: Uint8Array, n: number): number {
  const whole = n >> 3
  let count = 0
  for (let j = 0; j < whole && j < bits.length; j++) count += BITS_IN[bits[j]]
  if ((n & 7) !== 0 && whole < bits.length) count += BITS_IN[bits[whole] & (0xff << (8 - (n & 7)))]
  return count
}

/** The feeds of the images this node fetches now, by manifest CID (the have-updates protocol serves them). */
export class HaveFeeds {
  private readonly feeds = new Map<string, HaveFeed>()

  constructor (private readonly clock: Clock = realClock) {}

  open (manifestCid: string, chunkCount: number, bits: Uint8Array): HaveFeed {
    const feed = new HaveFeed(manifestCid, chunkCount, bits, this.clock)
    this.feeds.set(manifestCid, feed)
    return feed
  }

  get (manifestCid: string): HaveFeed | undefined {
    return this.feeds.get(manifestCid)
  }

  close (feed: HaveFeed, complete: boolean): void {
    feed.end(complete)
    if (this.feeds.get(feed.manifestCid) === feed) this.feeds.delete(feed.manifestCid)
  }
}
