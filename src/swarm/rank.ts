import { createHash } from 'node:crypto'

/**
 * Node ids ordered by rendezvous (highest-random-weight) score for `key`, best first: the same
 * order as `rendezvousOwner` in fetch/rendezvous.ts, which is its first element. Every node that
 * ranks the same set for the same key gets the same list, so "the first k" is a choice made without
 * coordination; when a node joins or leaves, the others keep their relative order.
 */
export function rendezvousRank (key: string, nodes: Iterable<string>): string[] {
  const scored = [...new Set(nodes)].map(node => ({
    node,
    score: createHash('sha256').update(node).update('\0').update(key).digest().readBigUInt64BE(0)
  }))
  scored.sort((a, b) => a.score === b.score ? (a.node < b.node ? -1 : 1) : (a.score > b.score ? -1 : 1))
  return scored.map(s => s.node)
}
