import { sleepWith, type Clock, type TimerHandle } from '../fetch/clock.js'

/** `pos` is the timer's place in the heap, -1 once it fired or was cleared. */
interface Timer { due: number, seq: number, fn: () => void, pos: number }

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
    const timer: Timer = { due: this.t + Math.max(0, ms), seq: this.seq++, fn, pos: -1 }
    this.push(timer)
    return timer
  }

  clearTimer = (handle: TimerHandle): void => {
    const timer = handle as Timer | undefined
    if (timer != null && timer.pos >= 0) this.remove(timer.pos)
  }

  sleep = async (ms: number, signal?: AbortSignal): Promise<void> => { await sleepWith(this, ms, signal) }

  /** Timers not yet fired nor cleared. */
  get pending (): number {
    return this.heap.length
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
    this.fired++
    timer.fn()
  }

  private less (a: Timer, b: Timer): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq)
  }

  private place (timer: Timer, i: number): void {
    this.heap[i] = timer
    timer.pos = i
  }

  private up (i: number): void {
    const h = this.heap
    const timer = h[i]
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(timer, h[parent])) break
      this.place(h[parent], i)
      i = parent
    }
    this.place(timer, i)
  }

  private down (i: number): void {
    const h = this.heap
    const timer = h[i]
    while (true) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const c = l + 1 < h.length && this.less(h[l + 1], h[l]) ? l + 1 : l
      if (!this.less(h[c], timer)) break
      this.place(h[c], i)
      i = c
    }
    this.place(timer, i)
  }

  private push (timer: Timer): void {
    this.heap.push(timer)
    this.up(this.heap.length - 1)
  }

  /** Takes the timer at heap place `i` off the heap. */
  private remove (i: number): Timer {
    const h = this.heap
    const timer = h[i]
    const last = h.pop()!
    if (i < h.length) {
      this.place(last, i)
      this.up(i)
      this.down(last.pos)
    }
    timer.pos = -1
    return timer
  }

  /** The earliest timer, taken off the heap. */
  private pop (): Timer | undefined {
    return this.heap.length > 0 ? this.remove(0) : undefined
  }
}

/** Resolves once every promise reaction queued now (and those they queue) has run. */
async function idle (): Promise<void> {
  await new Promise<void>(resolve => setImmediate(resolve))
}
