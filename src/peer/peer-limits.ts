import { TokenBucket } from '../util/token-bucket.js'

/** Per-peer bounds on the serving side of the imgswarm protocols. See {@link DEFAULT_PEER_LIMITS}. */
export interface PeerLimitsInit {
  /** Requests (streams opened to us, all imgswarm protocols together) one peer may make a second, sustained. */
  requestsPerSecond: number
  /** Requests one peer may make in a burst above that rate. */
  requestBurst: number
  /** Chunk bytes read from the store for one peer and not yet taken by its streams. */
  bytesInFlightPerPeer: number
}

/**
 * An honest fetch asks a peer for at most 4 batches at once (the fetcher's window), each of up to 256
 * chunks (~16 MiB), so at 600 MiB/s it makes ~40 requests a second, and ~150 with 16 KiB chunks; 500
 * a second leaves room for several fetches at once. The serving side reads 16 chunks per stream ahead
 * of the network (1 MiB at the default chunk size, 4 MiB at the largest), so 64 MiB in flight is never
 * reached by 16 streams of an honest peer, and bounds what a peer that stops reading can pin.
 */
export const DEFAULT_PEER_LIMITS: Readonly<PeerLimitsInit> = Object.freeze({
  requestsPerSecond: 500,
  requestBurst: 1000,
  bytesInFlightPerPeer: 64 * 1024 * 1024
})

/** Peers' state is forgotten when idle; above this many peers the idle ones are swept out. */
const SWEEP_ABOVE = 1024

interface PeerState {
  requests: TokenBucket
  inFlight: number
  waiters: Array<() => void>
}

/**
 * One node's per-peer limits, shared by every protocol it serves: a request rate per peer (a stream
 * over it is refused at once) and a budget of bytes in flight per peer (a stream that would exceed it
 * waits until the peer's other streams have taken their bytes).
 */
export class PeerLimits {
  readonly init: Readonly<PeerLimitsInit>
  private readonly peers = new Map<string, PeerState>()
  /** Requests refused for their rate, since start. */
  refusedRequests = 0

  constructor (init: Partial<PeerLimitsInit> = {}) {
    this.init = { ...DEFAULT_PEER_LIMITS, ...init }
  }

  /** Counts one request of `peer`; false when it is over its rate (refuse the stream). */
  admitRequest (peer: string): boolean {
    if (this.state(peer).requests.tryTake(1)) return true
    this.refusedRequests++
    return false
  }

  /**
   * Waits until `bytes` more may be in flight for `peer`, then counts them; give them back with
   * {@link release}. One read larger than the whole budget is let through alone.
   */
  async hold (peer: string, bytes: number, signal?: AbortSignal): Promise<void> {
    const s = this.state(peer)
    while (s.inFlight > 0 && s.inFlight + bytes > this.init.bytesInFlightPerPeer) {
      signal?.throwIfAborted()
      await new Promise<void>(resolve => {
        const wake = (): void => { signal?.removeEventListener('abort', wake); resolve() }
        s.waiters.push(wake)
        signal?.addEventListener('abort', wake, { once: true })
      })
    }
    s.inFlight += bytes
  }

  release (peer: string, bytes: number): void {
    const s = this.peers.get(peer)
    if (s == null) return
    s.inFlight = Math.max(0, s.inFlight - bytes)
    for (const wake of s.waiters.splice(0)) wake()
  }

  /** Bytes in flight for `peer` now. */
  inFlight (peer: string): number {
    return this.peers.get(peer)?.inFlight ?? 0
  }

  private state (peer: string): PeerState {
    let s = this.peers.get(peer)
    if (s == null) {
      if (this.peers.size >= SWEEP_ABOVE) this.sweep()
      s = { requests: new TokenBucket(this.init.requestsPerSecond, this.init.requestBurst), inFlight: 0, waiters: [] }
      this.peers.set(peer, s)
    }
    return s
  }

  /** Forgets peers with nothing in flight and a full bucket: they are as new. */
  private sweep (): void {
    for (const [peer, s] of this.peers) {
      if (s.inFlight === 0 && s.waiters.length === 0 && s.requests.tryTake(0) && s.requests.tryTake(s.requests.burst)) this.peers.delete(peer)
    }
  }
}
