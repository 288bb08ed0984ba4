/**
 * A token bucket: `rate` tokens a second, at most `burst` saved up. `take` waits for tokens in order of
 * arrival, so that transfers sharing a bucket share its rate; `tryTake` answers at once.
 *
 * @example
 * const upload = new TokenBucket(100e6, 8e6) // 100 MB/s, bursts of 8 MB
 * await upload.take(chunk.length, { signal })
 */
export class TokenBucket {
  readonly rate: number
  readonly burst: number
  private tokens: number
  private last = performance.now()
  private queue: Promise<void> = Promise.resolve()

  constructor (rate: number, burst: number) {
    if (!(rate > 0) || !(burst > 0)) throw new RangeError(`a token bucket needs a positive rate and burst, not ${rate}/${burst}`)
    this.rate = rate
    this.burst = burst
    this.tokens = burst
  }

  /** Takes `n` tokens if there are that many now. */
  tryTake (n = 1): boolean {
    this.refill()
    if (this.tokens < n) return false
    this.tokens -= n
    return true
  }

  /**
   * Takes `n` tokens, waiting until the bucket has them (more than `burst` may be asked for: the
   * bucket then goes into debt, and later takers wait it out). Rejects with the signal's reason.
   */
  async take (n: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    const turn = this.queue.then(async () => {
      options.signal?.throwIfAborted()
      this.refill()
      this.tokens -= n
      if (this.tokens < 0) await sleep(-this.tokens / this.rate * 1000, options.signal)
    })
    // A taker that gave up does not hold up the ones behind it.
    this.queue = turn.catch(() => {})
    await turn
  }

  private refill (): void {
    const now = performance.now()
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) / 1000 * this.rate)
    this.last = now
  }
}

async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
