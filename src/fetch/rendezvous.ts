import { createHash } from 'node:crypto'

/**
 * Rendezvous (highest-random-weight) hashing: every node that computes it over the same set of node
 * ids picks the same owner for a key, and when a node joins or leaves only its own share moves.
 */
export function rendezvousOwner (key: string, nodes: readonly string[]): string | undefined {
  let best: string | undefined
  let bestScore = -1n
  for (const node of nodes) {
    const score = createHash('sha256').update(node).update('\0').update(key).digest().readBigUInt64BE(0)
    if (score > bestScore || (score === bestScore && best != null && node < best)) {
      best = node
      bestScore = score
    }
  }
  return best
}
