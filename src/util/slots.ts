/**
 * At most `size` holders at once; the others wait in order, those that come `first` ahead of the rest.
 * `acquire` resolves with the function that gives the place back, and rejects with the signal's reason
 * if it aborts while waiting.
 */
export class Slots {
  private used = 0
  private readonly waiting: Array<() => void> = []
  /** How many at the front of `waiting` came first. */
  private firstWaiting = 0

  constructor (private readonly size: number) {}

  /** No holder and no waiter: the slots may be forgotten. */
  get idle (): boolean {
    return this.used === 0 && this.waiting.length === 0
  }

  async acquire (signal?: AbortSignal, first = false): Promise<() => void> {
    signal?.throwIfAborted()
    if (this.used < this.size) {
      this.used++
      return this.releaser()
    }
    await new Promise<void>((resolve, reject) => {
      const take = (): void => { signal?.removeEventListener('abort', onAbort); resolve() }
      const onAbort = (): void => {
        const i = this.waiting.indexOf(take)
        if (i >= 0) this.waiting.splice(i, 1)
        if (i >= 0 && i < this.firstWaiting) this.firstWaiting--
        reject(signal?.reason)
      }
      if (first) this.waiting.splice(this.firstWaiting++, 0, take)
      else this.waiting.push(take)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
    return this.releaser() // the place was handed over by the releaser of the one before
  }

  private releaser (): () => void {
    let done = false
    return () => {
      if (done) return
      done = true
      const next = this.waiting.shift()
      if (next != null && this.firstWaiting > 0) this.firstWaiting--
      if (next != null) next() // the place passes on; `used` stays
      else this.used--
    }
  }
}
