/** An opaque timer, as {@link Clock.setTimer} returns it. */
export type TimerHandle = unknown

/**
 * Time as the fetch scheduling code sees it. The real clock is the default; a virtual one
 * (src/testing/virtual-clock.ts) lets tests and the swarm simulator run the same code in simulated
 * time, so a minute of a swarm takes milliseconds.
 */
export interface Clock {
  /** Milliseconds since some fixed point; only differences count. */
  now: () => number
  /** Resolves after `ms`, or as soon as `signal` aborts (it does not reject: callers check the signal). */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
  /** Calls `fn` once after `ms`. */
  setTimer: (fn: () => void, ms: number) => TimerHandle
  /** Cancels a timer that has not fired; a handle that fired or was cleared already is ignored. */
  clearTimer: (handle: TimerHandle) => void
}

async function sleepWith (clock: Pick<Clock, 'setTimer' | 'clearTimer'>, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return
  await new Promise<void>(resolve => {
    const wake = (): void => { clock.clearTimer(timer); signal?.removeEventListener('abort', wake); resolve() }
    const timer = clock.setTimer(wake, ms)
    signal?.addEventListener('abort', wake, { once: true })
  })
}

/** Wall-clock time and Node's timers. */
export const realClock: Clock = Object.freeze({
  now: () => Date.now(),
  sleep: async (ms: number, signal?: AbortSignal) => { await sleepWith(realClock, ms, signal) },
  setTimer: (fn: () => void, ms: number): TimerHandle => setTimeout(fn, ms),
  clearTimer: (handle: TimerHandle) => { clearTimeout(handle as NodeJS.Timeout) }
})

/** `sleep` for a clock that supplies only timers (a virtual clock builds on it). */
export { sleepWith }

/**
 * Runs `fn` with a signal that aborts after `ms` on `clock` (a `TimeoutError`, as
 * `AbortSignal.timeout` gives) or with `parent`; the timer and listener are freed when `fn` settles.
 */
export async function withClockDeadline<T> (clock: Clock, ms: number, parent: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  const onParent = (): void => { controller.abort(parent?.reason) }
  const timer = clock.setTimer(() => { controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')) }, ms)
  if (parent?.aborted === true) onParent()
  else parent?.addEventListener('abort', onParent, { once: true })
  try {
    return await fn(controller.signal)
  } finally {
    clock.clearTimer(timer)
    parent?.removeEventListener('abort', onParent)
  }
}
