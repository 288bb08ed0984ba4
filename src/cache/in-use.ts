/**
 * Which images are in use in this process: being read (an export, an API stream) or recently asked
 * for by a peer that is fetching them. Eviction skips them, so a VM spawning from an image or a
 * neighbour halfway through a swarm fetch never sees it vanish. Images being fetched are protected
 * by their `fetching` state, not here.
 */
export class InUse {
  private readonly readers = new Map<string, number>()
  /** Image hex → until when (ms) a peer's interest keeps it in use. */
  private readonly askedFor = new Map<string, number>()

  /** Marks the image read from until the returned function is called. */
  hold (hex: string): () => void {
    this.readers.set(hex, (this.readers.get(hex) ?? 0) + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const n = (this.readers.get(hex) ?? 1) - 1
      if (n > 0) this.readers.set(hex, n)
      else this.readers.delete(hex)
    }
  }

  /** Keeps the image in use for `ms` more: peers poll an image they fetch every few hundred ms. */
  touch (hex: string, ms = 60_000): void {
    const now = Date.now()
    if (this.askedFor.size > 4096) for (const [k, until] of this.askedFor) if (until <= now) this.askedFor.delete(k)
    this.askedFor.set(hex, Math.max(this.askedFor.get(hex) ?? 0, now + ms))
  }

  has (hex: string): boolean {
    return this.readers.has(hex) || (this.askedFor.get(hex) ?? 0) > Date.now()
  }
}
