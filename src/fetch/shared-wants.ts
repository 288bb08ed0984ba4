import type { VerifiedChunk } from '../chunks/cid.js'
import type { Want } from './wants.js'

/** A chunk another fetch of this node is getting: settles with its bytes once stored, or undefined when that fetch let it go. */
export type Claimed = Promise<VerifiedChunk | undefined>

interface Claim {
  owner: object
  settle: (chunk: VerifiedChunk | undefined) => void
  settled: Claimed
}

/**
 * The chunks that the node's fetches are getting now, by digest, so that images fetched at the same
 * time that share chunks (two versions of one disk, a kernel in two bundles) move each shared chunk
 * once: the first fetch to want a chunk claims it, and the others wait for its copy instead of asking
 * peers or the origin for it again. A fetch that ends without a chunk it claimed lets the claim go, and
 * a waiting fetch then gets the chunk itself.
 */
export class SharedWants {
  private readonly claims = new Map<string, Claim>()

  /** Splits `wants` into those `owner` now fetches itself (claimed for it) and those another fetch claimed first. */
  claim (owner: object, wants: Want[]): { mine: Want[], theirs: Array<{ want: Want, claimed: Claimed }> } {
    const mine: Want[] = []
    const theirs: Array<{ want: Want, claimed: Claimed }> = []
    for (const w of wants) {
      const c = this.claims.get(w.key)
      if (c != null && c.owner !== owner) {
        theirs.push({ want: w, claimed: c.settled })
        continue
      }
      if (c == null) {
        let settle!: (chunk: VerifiedChunk | undefined) => void
        const settled: Claimed = new Promise(resolve => { settle = resolve })
        this.claims.set(w.key, { owner, settle, settled })
      }
      mine.push(w)
    }
    return { mine, theirs }
  }

  /** `owner` stored these chunks: the fetches waiting for them take them. */
  stored (owner: object, chunks: VerifiedChunk[], wants: Want[]): void {
    wants.forEach((w, i) => { this.release(owner, w.key, chunks[i]) })
  }

  /** `owner` ends: whatever it claimed and did not store goes back to those waiting. */
  releaseAll (owner: object, wants: Want[]): void {
    for (const w of wants) this.release(owner, w.key, undefined)
  }

  /** Chunks claimed now (for tests and metrics). */
  get size (): number {
    return this.claims.size
  }

  private release (owner: object, key: string, chunk: VerifiedChunk | undefined): void {
    const c = this.claims.get(key)
    if (c == null || c.owner !== owner) return
    this.claims.delete(key)
    c.settle(chunk)
  }
}
