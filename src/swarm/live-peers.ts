import type { AnyLibp2p, PeerId } from '../peer/types.js'

/**
 * The connected peers that are imgswarm nodes able to take part in seeding: identify told us that
 * they speak `protocol`. A peer that is not connected (stopped, crashed, partitioned) is not live,
 * whatever the DHT still says about it.
 */
export async function livePeers (node: AnyLibp2p, protocol: string): Promise<PeerId[]> {
  const out: PeerId[] = []
  for (const peer of node.getPeers()) {
    const protocols = await node.peerStore.get(peer).then(p => p.protocols, () => [] as string[])
    if (protocols.includes(protocol)) out.push(peer)
  }
  return out
}
