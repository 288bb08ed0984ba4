import { setBit, type PeerSource } from './sources.js'
import { realClock, type Clock } from './clock.js'

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
}

/** One local image being fetched: its have-bitfield, its updates to neighbours, and what they hold. */
export class HaveFeed {
  readonly peers = new Map<string, PeerView>()
  /** Undefined while fetching; true once the image is complete, false when its fetch failed. */
  outcome: boolean | undefined
  private readonly listeners = new Set<(indices: number[] | 'end') => void>()
  private waiters: Array<() => void> = []

  /** `bits` is the fetch's own bitfield (shared, not copied): it is current whenever it is read. */
  constructor (readonly manifestCid: string, readonly chunkCount: number, readonly bits: Uint8Array, readonly clock: Clock = realClock) {}

  /** Chunks now stored here: told to every neighbour subscribed. */
  stored (indices: number[]): void {
    for (const l of this.listeners) l(indices)
  }

  /** The fetch ended: subscribers send "complete" (or just close) and stop. */
  end (complete: boolean): void {
    if (this.outcome !== undefined) return
    this.outcome = complete
    for (const l of [...this.listeners]) l('end')
    this.changed()
  }

  /** Listens for this node's new chunks; returns the unsubscribe function. */
  subscribe (listener: (indices: number[] | 'end') => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** A peer's whole bitfield (first heard, or polled again). */
  setPeer (source: PeerSource, have: Uint8Array, fetching: boolean): PeerView {
    const old = this.peers.get(source.id)
    const gained = old == null || have.some((b, i) => (b & ~(old.have[i] ?? 0)) !== 0)
    const view: PeerView = { source, have: Uint8Array.from(have), fetching, lastGain: gained || old == null ? this.clock.now() : old.lastGain, live: true }
    this.peers.set(source.id, view)
    this.changed()
    return view
  }

  /** A peer newly holds these chunk indices. */
  gained (peer: string, runs: Array<[number, number]>): void {
    const view = this.peers.get(peer)
    if (view == null) return
    for (const [start, length] of runs) for (let i = start; i < start + length; i++) setBit(view.have, i)
    if (runs.length > 0) {
      view.lastGain = this.clock.now()
      this.changed()
    }
  }

  /** A peer holds every chunk and is done fetching. */
  peerComplete (peer: string): void {
    const view = this.peers.get(peer)
    if (view == null) return
    view.have.fill(0xff)
    const spare = view.have.length * 8 - this.chunkCount
    if (spare > 0) view.have[view.have.length - 1] &= 0xff << spare
    view.fetching = false
    view.lastGain = this.clock.now()
    this.changed()
  }

  /** A peer's stream ended: a complete peer stays a holder; one that was fetching is forgotten (it failed or left). */
  peerGone (peer: string, source?: PeerSource): void {
    const view = this.peers.get(peer)
    if (view == null || (source != null && view.source !== source)) return
    if (view.fetching) this.peers.delete(peer)
    else view.live = false
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
