import type { AnyLibp2p, PeerId } from '../peer/types.js'
import { askSummary, NODE_SUMMARY } from '../ui/summary-protocol.js'

/** How long a peer's name is reused before it is asked again. */
const NAME_TTL_MS = 5 * 60_000
/** How long a peer that would not say its name is left alone. */
const UNKNOWN_TTL_MS = 30_000

/** One connected peer as `imgswarm peers` shows it. */
export interface PeerRow {
  peerId: string
  /** Its node name (`--name`), when it told this node; null otherwise. */
  name: string | null
  /** The addresses it listens on (from identify, through the peer store). */
  addrs: string[]
  /** The connection's remote address: for an inbound connection an ephemeral port. */
  addr: string
  direction: string
  status: string
}

/**
 * Node names of peers, learnt from their node summaries (the cluster's own protocol, answered for
 * members only) and kept a few minutes, so that peer IDs can be shown with a name beside them.
 */
export class PeerNames {
  private readonly known = new Map<string, { name: string | null, until: number }>()

  constructor (private readonly node: AnyLibp2p) {}

  /** The names of these connected peers that tell them (null for the others), asked in parallel. */
  async namesOf (peers: PeerId[], options: { signal?: AbortSignal } = {}): Promise<Map<string, string | null>> {
    const now = Date.now()
    const out = new Map<string, string | null>()
    await Promise.all(peers.map(async p => {
      const id = p.toString()
      const cached = this.known.get(id)
      if (cached != null && cached.until > now) {
        out.set(id, cached.name)
        return
      }
      // Only peers that speak the summary protocol are asked (an old node, or another libp2p program, is not).
      const speaks = await this.node.peerStore.get(p).then(i => i.protocols.includes(NODE_SUMMARY.id), () => false)
      const name = speaks ? await askSummary(this.node, p, options).then(s => s.name !== '' ? s.name : null, () => null) : null
      this.known.set(id, { name, until: now + (name != null ? NAME_TTL_MS : UNKNOWN_TTL_MS) })
      out.set(id, name)
    }))
    // Peers that left are forgotten once their entry lapses.
    for (const [id, e] of this.known) if (e.until <= now) this.known.delete(id)
    return out
  }

  /** The connected peers with their names and listen addresses. */
  async rows (options: { signal?: AbortSignal } = {}): Promise<PeerRow[]> {
    const conns = this.node.getConnections()
    const names = await this.namesOf([...new Map(conns.map(c => [c.remotePeer.toString(), c.remotePeer])).values()], options)
    return await Promise.all(conns.map(async c => {
      const info = await this.node.peerStore.get(c.remotePeer).catch(() => undefined)
      return {
        peerId: c.remotePeer.toString(),
        name: names.get(c.remotePeer.toString()) ?? null,
        addrs: (info?.addresses ?? []).map(a => a.multiaddr.toString()),
        addr: c.remoteAddr.toString(),
        direction: c.direction,
        status: c.status
      }
    }))
  }
}
