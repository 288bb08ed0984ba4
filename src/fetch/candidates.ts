import { createHash } from 'node:crypto'

/**
 * One fetching node as a neighbour tells of it: its id and how many chunks of the image it holds.
 * `held` rising is how nodes that never talk to it tell a live owner from a stalled or dead one.
 */
export interface CandidateClaim {
  id: string
  held: number
}

/** A claim as kept here: when its count last rose (this node's clock), and its score. */
interface Heard {
  held: number
  risenAt: number
  score: bigint
}

/**
 * Candidates are told to a neighbour at most this often, and only when they changed: often enough
 * that a live owner's rising count travels a few hops well within a stall timeout.
 */
export const CLAIMS_SPACING_MS = 500

/**
 * News of a candidate not known before is passed on after this long instead (and no two candidate
 * messages on one stream are closer): the mesh agrees within a few hops of this.
 */
export const NEWS_SPACING_MS = 100

/** Most claims in one message (a limit above this is cut to it). */
export const MAX_CLAIMS = 64

/** Claims as one string, to tell whether a message would say anything new. */
export function claimsKey (claims: readonly CandidateClaim[]): string {
  return claims.map(c => `${c.id}:${c.held}`).join(',')
}

/**
 * How long from `now` until the next multiple of `spacing`: every stream of a feed tells its
 * candidates on the same beat, so they are ranked once for all of them.
 */
export function nextBeat (now: number, spacing: number): number {
  return spacing - (now % spacing)
}

/** Most scores cached: far above the peers one fetch hears of, a bound on what liars can add. */
const MAX_SCORES = 4096

/**
 * The origin readers of one image, agreed across a partial mesh. Every fetching node has a score for
 * the image (one hash of the image and its id); the `limit` nodes with the lowest scores are the
 * candidates, and each origin group belongs to one of them by rendezvous. Nodes tell their
 * neighbours the best candidates they know (in their have-updates), and those neighbours tell theirs:
 * the global best are the best of every subset that contains them, so after as many rounds as the
 * mesh is wide every node names the same candidates and so the same owner for each group, though
 * none sees more than its neighbours. Ownership among only the peers a node sees would make every
 * node that wins among its own neighbours an origin reader: about N / (neighbours + 1) copies.
 */
export class Candidates {
  private readonly heard = new Map<string, Heard>()
  private readonly scores = new Map<string, bigint>()

  readonly limit: number

  constructor (private readonly image: string, readonly chunkCount: number, limit: number) {
    this.limit = Math.max(1, Math.min(MAX_CLAIMS, limit))
  }

  /** The image's score for a node: lower is a better candidate. */
  score (id: string): bigint {
    let s = this.scores.get(id)
    if (s == null) {
      if (this.scores.size >= MAX_SCORES) this.scores.clear()
      s = createHash('sha256').update(this.image).update('\0').update(id).digest().readBigUInt64BE(0)
      this.scores.set(id, s)
    }
    return s
  }

  /**
   * A neighbour's claims: new nodes are kept if they rank, and a count that rose marks its node live
   * now. Returns 'new' if a node was heard of for the first time, 'risen' if only counts rose.
   */
  hear (claims: readonly CandidateClaim[], now: number, self?: string): 'new' | 'risen' | undefined {
    let changed: 'new' | 'risen' | undefined
    for (const c of claims) {
      if (c.id === self || c.held > this.chunkCount) continue
      const old = this.heard.get(c.id)
      if (old == null) {
        this.heard.set(c.id, { held: c.held, risenAt: now, score: this.score(c.id) })
        changed = 'new'
      } else if (c.held > old.held) {
        old.held = c.held
        old.risenAt = now
        changed ??= 'risen'
      }
    }
    // Twice the limit: room for stalled candidates beside the live ones that replace them.
    if (this.heard.size > 2 * this.limit) {
      const keep = [...this.heard.entries()].sort((a, b) => compare(a[1].score, b[1].score)).slice(0, 2 * this.limit)
      this.heard.clear()
      for (const [id, h] of keep) this.heard.set(id, h)
    }
    return changed
  }

  /**
   * The best `limit` live candidates known, best first: the ones heard of, merged with what this node
   * sees itself (itself and the peers it watches, whose counts and gains it knows first-hand). A
   * candidate whose count has not risen for `stallMs` (dead, or stuck) is left out unless it holds
   * every chunk, and the next one takes its place; `self` always counts itself live.
   */
  best (direct: readonly DirectCandidate[], now: number, stallMs: number, self?: string): CandidateClaim[] {
    const all = new Map<string, DirectCandidate & { score: bigint }>()
    for (const [id, h] of this.heard) all.set(id, { id, held: h.held, risenAt: h.risenAt, score: h.score })
    for (const d of direct) {
      const h = all.get(d.id)
      if (h == null) all.set(d.id, { ...d, score: this.score(d.id) })
      else { h.held = Math.max(h.held, d.held); h.risenAt = Math.max(h.risenAt, d.risenAt) }
    }
    return [...all.values()]
      .filter(c => c.id === self || c.held >= this.chunkCount || now - c.risenAt <= stallMs)
      .sort((a, b) => compare(a.score, b.score) || (a.id < b.id ? -1 : 1))
      .slice(0, this.limit)
      .map(c => ({ id: c.id, held: c.held }))
  }
}

/** A candidate this node knows first-hand: itself, or a peer it watches that is fetching. */
export interface DirectCandidate {
  id: string
  held: number
  /** When its count last rose (this node's clock). */
  risenAt: number
}

function compare (a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}
