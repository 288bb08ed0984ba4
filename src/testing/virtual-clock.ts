import { sleepWith, type Clock, type TimerHandle } from '../fetch/clock.js'

interface Timer { due: number, seq: number, fn: () => void, live: boolean }

/**
 * Simulated time for the fetch code: timers fire in order of their due time, and time jumps from one
 * to the next once every promise that can settle has settled. Nothing else in the process may wait
 * on real timers or I/O while {@link VirtualClock.run} drives it, or that work would be taken for
 * idle.
 *
 * @example
 * const clock = new VirtualClock()
 * const done = swarmFetch({ ...options, clock })
 * await clock.run(done) // a minute of fetching, in milliseconds
 */
export class VirtualClock implements Clock {
  private t = 0
  private seq = 0
  private readonly heap: Timer[] = []
  /** Timers fired so far: the simulator's count of events. */
  fired = 0

  now = (): number => this.t

  setTimer = (fn: () => void, ms: number): TimerHandle => {
    const timer: Timer = { due: this.t + Math.max(0, ms), seq: this.seq++, fn, live: true }
    this.push(timer)
    return timer
  }

  clearTimer = (handle: TimerHandle): void => {
    if (handle != null) (handle as Timer).live = false
  }

  sleep = async (ms: number, signal?: AbortSignal): Promise<void> => { await sleepWith(this, ms, signal) }

  /** Timers not yet fired nor cleared. */
  get pending (): number {
    return this.heap.reduce((n, t) => n + (t.live ? 1 : 0), 0)
  }

  /**
   * Fires timers in order until `until` settles (then returns its outcome), virtual time passes
   * `limitMs`, or no timer is left while it is still pending (a deadlock: an error).
   */
  async run<T> (until: Promise<T>, limitMs = Infinity): Promise<T> {
    let settled = false
    until.then(() => { settled = true }, () => { settled = true })
    while (true) {
      await idle()
      if (settled) return await until
      const next = this.pop()
      if (next == null) throw new Error(`virtual time ${this.t} ms: nothing is scheduled and the work has not ended`)
      if (next.due > limitMs) {
        this.push(next)
        throw new Error(`virtual time limit of ${limitMs} ms reached`)
      }
      this.fire(next)
    }
  }

  /** Lets `ms` of virtual time pass, firing the timers due meanwhile. */
  async advance (ms: number): Promise<void> {
    const end = this.t + ms
    while (true) {
      await idle()
      const next = this.pop()
      if (next == null || next.due > end) {
        if (next != null) this.push(next)
        break
      }
      this.fire(next)
    }
    this.t = end
  }

  private fire (timer: Timer): void {
    this.t = Math.max(this.t, timer.due)
    timer.live = false
    this.fired++
    timer.fn()
  }

  private less (a: Timer, b: Timer): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq)
  }

  private push (timer: Timer): void {
    const h = this.heap
    h.push(timer)
    let i = h.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(h[i], h[parent])) break
      [h[i], h[parent]] = [h[parent], h[i]]
      i = parent
    }
  }

  /** The earliest live timer, taken off the heap (cleared ones are dropped on the way). */
  private pop (): Timer | undefined {
    const h = this.heap
    while (h.length > 0) {
      const top = h[0]
      const last = h.pop()!
      if (h.length > 0) {
        h[0] = last
        let i = 0
        while (true) {
          const l = 2 * i + 1
          const r = l + 1
          let m = i
          if (l < h.length && this.less(h[l], h[m])) m = l
          if (r < h.length && this.less(h[r], h[m])) m = r
          if (m === i) break;
          [h[i], h[m]] = [h[m], h[i]]
          i = m
        }
      }
      if (top.live) return top
    }
    return undefined
  }
}

/** Resolves once every promise reaction queued now (and those they queue) has run. */
async function idle (): Promise<void> {
  await new Promise<void>(resolve => setImmediate(resolve))
}
