import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { AnyLibp2p } from './types.js'

/** First wait before a failed bootstrap peer is dialled again; it doubles up to {@link MAX_BACKOFF_MS}. */
const FIRST_BACKOFF_MS = 2000
const MAX_BACKOFF_MS = 15_000
/** How often the list is looked at, and how many redials run at once (a loaded machine is not flooded). */
const TICK_MS = 1000
const CONCURRENT_DIALS = 4

/**
 * Dials again, with backoff, the bootstrap peers a node is not connected to. libp2p's bootstrap module
 * dials each once at start, and its reconnect queue redials only peers that were connected: a first
 * dial that failed (the peer was not listening yet, or its handshake timed out on a machine starting
 * many nodes at once) was never tried again, which left pairs of a 16-node cluster unconnected for good.
 */
export function redialBootstrap (node: AnyLibp2p, addrs: string[]): void {
  const peers = addrs.map(a => ({ addr: multiaddr(a), id: peerIdFromString(a.slice(a.lastIndexOf('/p2p/') + 5)), backoff: FIRST_BACKOFF_MS, nextAt: Date.now() + FIRST_BACKOFF_MS }))
  let running = 0
  let timer: NodeJS.Timeout | undefined
  const tick = (): void => {
    const now = Date.now()
    for (const p of peers) {
      if (running >= CONCURRENT_DIALS) break
      if (p.nextAt > now) continue
      if (node.getConnections(p.id).length > 0) { p.backoff = FIRST_BACKOFF_MS; p.nextAt = now + p.backoff; continue }
      running++
      // Jittered, so nodes started together do not redial each other in lockstep.
      p.nextAt = Infinity
      node.dial(p.addr).then(() => { p.backoff = FIRST_BACKOFF_MS }, () => { p.backoff = Math.min(2 * p.backoff, MAX_BACKOFF_MS) }).finally(() => {
        running--
        p.nextAt = Date.now() + p.backoff * (0.5 + Math.random())
      })
    }
  }
  node.addEventListener('start', () => { timer ??= setInterval(tick, TICK_MS); timer.unref() })
  node.addEventListener('stop', () => { clearInterval(timer); timer = undefined })
}
