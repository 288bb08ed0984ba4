import { OriginError, OriginTimeoutError } from '../errors.js'
import { DEFAULT_TUNING, type OriginTuning } from './origin.js'

/** Longest wait between two attempts. */
const MAX_BACKOFF_MS = 10_000

/** Whether an error (already mapped by the backend) is worth another attempt. */
export function isRetryable (err: unknown): boolean {
  return err instanceof OriginTimeoutError || (err instanceof OriginError && err.retryable)
}

/** The delay before retry number `n` (1-based): exponential from `baseMs`, with full jitter, capped. */
export function backoffDelay (n: number, baseMs: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** (n - 1))
  return ceiling / 2 + Math.random() * ceiling / 2
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * An AbortController for one attempt: aborted when the caller's signal aborts, or when `timeoutMs`
 * passes without {@link Attempt.touch} (then `timedOut` is set and the reason is an OriginTimeoutError).
 */
export class Attempt {
  readonly controller = new AbortController()
  timedOut = false
  private timer: NodeJS.Timeout | undefined
  private readonly onAbort: () => void

  constructor (private readonly what: string, private readonly timeoutMs: number, private readonly parent?: AbortSignal) {
    this.onAbort = () => { this.controller.abort(parent?.reason) }
    parent?.addEventListener('abort', this.onAbort, { once: true })
    this.touch()
  }

  get signal (): AbortSignal { return this.controller.signal }

  /** Restarts the idle timer: call it whenever the other side shows life. */
  touch (): void {
    clearTimeout(this.timer)
    if (this.timeoutMs <= 0 || this.controller.signal.aborted) return
    this.timer = setTimeout(() => {
      this.timedOut = true
      this.controller.abort(new OriginTimeoutError(`${this.what}: no answer for ${this.timeoutMs} ms`))
    }, this.timeoutMs)
  }

  /** Stops the timer while the caller, not the origin, holds things up. */
  pause (): void {
    clearTimeout(this.timer)
  }

  /** The error to report for `err`: the caller's abort reason, a timeout, or the backend's mapping. */
  settle (err: unknown, mapError: (err: unknown) => unknown): unknown {
    if (this.parent?.aborted === true) return this.parent.reason
    if (this.timedOut) return new OriginTimeoutError(`${this.what}: no answer for ${this.timeoutMs} ms`, { cause: err })
    return mapError(err)
  }

  dispose (): void {
    clearTimeout(this.timer)
    this.parent?.removeEventListener('abort', this.onAbort)
  }
}

export interface RetryOptions extends OriginTuning {
  /** The object or URL, for messages. */
  what: string
  signal?: AbortSignal
  /** Turns a driver error into ours (OriginError with `retryable`, OriginNotFoundError …). */
  mapError: (err: unknown) => unknown
  /** Whether `timeoutMs` bounds each whole attempt. Default true; uploads pass false and rely on the transport's idle timeout. */
  deadline?: boolean
}

/**
 * Runs `fn` until it succeeds, a non-retryable error comes, or `retries` retries are spent, with
 * backoff in between. Each attempt gets its own signal, aborted by the caller's signal or by the
 * timeout.
 */
export async function withRetries<T> (fn: (signal: AbortSignal) => Promise<T>, options: RetryOptions): Promise<T> {
  const retries = options.retries ?? DEFAULT_TUNING.retries
  const timeoutMs = options.deadline === false ? 0 : options.timeoutMs ?? DEFAULT_TUNING.timeoutMs
  for (let failures = 0; ; failures++) {
    options.signal?.throwIfAborted()
    const attempt = new Attempt(options.what, timeoutMs, options.signal)
    try {
      return await fn(attempt.signal)
    } catch (err) {
      const e = attempt.settle(err, options.mapError)
      if (options.signal?.aborted === true || !isRetryable(e) || failures >= retries) throw e
    } finally {
      attempt.dispose()
    }
    await sleep(backoffDelay(failures + 1, options.retryDelayMs ?? DEFAULT_TUNING.retryDelayMs), options.signal)
  }
}
