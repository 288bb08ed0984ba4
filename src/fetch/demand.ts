import { realClock, type Clock } from './clock.js'

/** Chunk indices wanted now, at most this many (a reader asks for a few MiB at a time). */
const MAX_WANTED = 65_536

/** What background work waits for: urgent fetches in flight. */
export interface Urgency {
  readonly busy: boolean
  /** Resolves when no urgent fetch is in flight, after at most `ms`, or when `signal` aborts. */
  quiet: (ms: number, signal: AbortSignal, clock?: Clock) => Promise<void>
}

/**
 * The chunks of an image that readers are waiting for (an NBD export, an HTTP range of an image
 * still arriving). The image's fetch takes them before anything else, from the peers that hold them,
 * else the origin by exact range (see demand-fetch.ts), while the rest of the image keeps arriving.
 */
export class Demand implements Urgency {
  private readonly wanted = new Set<number>()
  private wake?: () => void
  private urgentInFlight = 0
  private readonly onQuiet = new Set<() => void>()
  /** Whether any reader has asked for chunks: the fetch then serves demand first. */
  engaged = false

  /** Asks for chunk indices; ones already asked for are asked once. */
  want (indices: Iterable<number>): void {
    for (const i of indices) {
      if (this.wanted.size >= MAX_WANTED) break
      this.wanted.add(i)
    }
    this.engaged = true
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /** The indices asked for since the last call, in ascending order. */
  take (): number[] {
    const out = [...this.wanted].sort((a, b) => a - b)
    this.wanted.clear()
    return out
  }

  /**
   * Whether urgent chunks are being fetched: background reads start no new request meanwhile, so on
   * a thin link a reader's chunks do not queue behind megabytes it did not ask for.
   */
  get busy (): boolean {
    return this.urgentInFlight > 0
  }

  /** Runs an urgent fetch, counted in {@link busy} while it runs. */
  async urgently<T> (fn: () => Promise<T>): Promise<T> {
    this.urgentInFlight++
    try {
      return await fn()
    } finally {
      if (--this.urgentInFlight === 0) for (const f of [...this.onQuiet]) f()
    }
  }

  async quiet (ms: number, signal: AbortSignal, clock: Clock = realClock): Promise<void> {
    if (!this.busy || signal.aborted) return
    await new Promise<void>(resolve => {
      const done = (): void => { clock.clearTimer(timer); signal.removeEventListener('abort', done); this.onQuiet.delete(done); resolve() }
      const timer = clock.setTimer(done, ms)
      signal.addEventListener('abort', done, { once: true })
      this.onQuiet.add(done)
    })
  }

  /** Resolves when chunks are asked for, after `ms`, or when `signal` aborts. */
  async next (ms: number, signal: AbortSignal, clock: Clock = realClock): Promise<void> {
    if (this.wanted.size > 0 || signal.aborted) return
    await new Promise<void>(resolve => {
      const done = (): void => { clock.clearTimer(timer); signal.removeEventListener('abort', done); if (this.wake === done) this.wake = undefined; resolve() }
      const timer = clock.setTimer(done, ms)
      signal.addEventListener('abort', done, { once: true })
      this.wake = done
    })
  }
}
