/**
 * Chunks that arrived ahead of an in-order reader (the whole-image hash, a streaming GET), by image
 * index, up to a byte limit. When full, a nearer chunk displaces the farthest one held: chunks arrive
 * out of order from parallel requests, and keeping the ones the reader needs next is what spares it
 * reading them back from the store. The chunk at the reader's position is always taken.
 */
export class AheadBuffer {
  private readonly held = new Map<number, Uint8Array>()
  private heldBytes = 0

  constructor (private readonly limit: number) {}

  get bytes (): number { return this.heldBytes }

  has (i: number): boolean { return this.held.has(i) }

  /** Offers chunk `i` to a reader that is at `position`; kept unless behind it, already held, or farther than everything held when full. */
  offer (i: number, chunk: Uint8Array, position: number): void {
    if (i < position || this.held.has(i)) return
    while (this.heldBytes + chunk.length > this.limit) {
      const farthest = this.farthest()
      if (farthest === undefined || farthest < i) break
      this.remove(farthest)
    }
    if (i !== position && this.heldBytes + chunk.length > this.limit) return
    this.held.set(i, chunk)
    this.heldBytes += chunk.length
  }

  /** Removes and returns chunk `i`, if held. */
  take (i: number): Uint8Array | undefined {
    const chunk = this.held.get(i)
    if (chunk !== undefined) this.remove(i)
    return chunk
  }

  /** Forgets every chunk before `position`: the reader has passed them. */
  dropBefore (position: number): void {
    for (const i of this.held.keys()) if (i < position) this.remove(i)
  }

  private remove (i: number): void {
    this.heldBytes -= this.held.get(i)?.length ?? 0
    this.held.delete(i)
  }

  private farthest (): number | undefined {
    let far: number | undefined
    for (const i of this.held.keys()) if (far === undefined || i > far) far = i
    return far
  }
}
