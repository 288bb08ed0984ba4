/**
 * Peers caught lying about an image (a manifest whose chunks do not make the image it names, or one an
 * origin contradicts), remembered for a while so that the next fetch does not ask them again. Bounded:
 * the oldest entry goes when it is full.
 */
export class LyingPeers {
  private readonly until = new Map<string, number>()
  private readonly ttlMs: number
  private readonly max: number

  constructor (options: { ttlMs?: number, max?: number } = {}) {
    this.ttlMs = options.ttlMs ?? 60 * 60_000
    this.max = options.max ?? 4096
  }

  mark (peer: string, now = Date.now()): void {
    this.until.delete(peer)
    this.until.set(peer, now + this.ttlMs)
    if (this.until.size > this.max) this.until.delete(this.until.keys().next().value!)
  }

  has (peer: string, now = Date.now()): boolean {
    const until = this.until.get(peer)
    if (until == null) return false
    if (until > now) return true
    this.until.delete(peer)
    return false
  }
}
