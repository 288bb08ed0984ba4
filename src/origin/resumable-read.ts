import { OriginError, OriginNotFoundError, OriginRangeError } from '../errors.js'
import { DEFAULT_TUNING, type OriginReadOptions, type OriginStat, type OriginTuning } from './origin.js'
import { Attempt, backoffDelay, isRetryable, sleep } from './retry.js'

/** One attempt's answer to "send me the object's bytes from `start`". */
export interface OpenedRange {
  /**
   * The bytes from `start` on, up to the requested end or the object's end. It must end or throw
   * once the signal given to the opener aborts.
   */
  body: AsyncIterable<Uint8Array>
  /** The object's whole size, when the answer says it. */
  size?: number
  /** Releases the transfer when the reader stops before iterating `body` to its end (a range error, an abort). */
  cancel?: () => void
}

/** What {@link resumableRead} needs from a backend. */
export interface RangeSource {
  /** The object, for messages: a URL without credentials. */
  what: string
  /**
   * Starts a transfer of bytes `[start, end)` (`end` undefined: to the object's end). Reject with an
   * OriginNotFoundError when the object is missing; an OriginRangeError when `start` is past its end.
   */
  open: (start: number, end: number | undefined, signal: AbortSignal) => Promise<OpenedRange>
  /** The object's size, for zero-length reads. */
  stat: (signal: AbortSignal) => Promise<OriginStat | undefined>
  /** Turns a driver error into ours; errors that may pass on retry become an OriginError with `retryable: true`. */
  mapError: (err: unknown) => unknown
}

/**
 * Reads `[offset, offset + length)` of an object as one unbroken stream, whatever happens to the
 * connections underneath: when a transfer fails with a retryable error, stalls past `timeoutMs` or
 * ends early, a new one is opened at the first byte not yet delivered. `retries` bounds how many
 * attempts in a row may fail without delivering a byte; backoff grows between them. Exported for
 * plug-in authors, whose `read` can be this function over their own `open`.
 *
 * @example
 * read (hex, options) {
 *   return resumableRead({ what: url, open: (start, end, signal) => get(url, start, end, signal), stat, mapError }, options)
 * }
 */
export async function * resumableRead (source: RangeSource, options: OriginReadOptions & OriginTuning = {}): AsyncGenerator<Uint8Array, void, undefined> {
  const { what } = source
  const offset = options.offset ?? 0
  checkInteger('offset', offset)
  if (options.length !== undefined) checkInteger('length', options.length)
  const signal = options.signal
  const timeoutMs = options.timeoutMs ?? DEFAULT_TUNING.timeoutMs
  const retries = options.retries ?? DEFAULT_TUNING.retries
  const retryDelayMs = options.retryDelayMs ?? DEFAULT_TUNING.retryDelayMs
  signal?.throwIfAborted()

  if (options.length === 0) {
    // No transfer can express an empty range: check that the object exists and the offset is in it.
    const attempt = new Attempt(what, timeoutMs, signal)
    let st: OriginStat | undefined
    try {
      st = await source.stat(attempt.signal)
    } catch (err) {
      throw attempt.settle(err, source.mapError)
    } finally {
      attempt.dispose()
    }
    if (st === undefined) throw new OriginNotFoundError(`${what}: not found`)
    if (offset > st.size) throw rangeError(what, offset, undefined, st.size)
    return
  }

  let pos = offset
  let end = options.length === undefined ? undefined : offset + options.length
  let failures = 0
  for (;;) {
    const attempt = new Attempt(what, timeoutMs, signal)
    const started = pos
    let yielding = false
    let opened: OpenedRange | undefined
    try {
      opened = await source.open(pos, end, attempt.signal)
      attempt.touch()
      if (opened.size !== undefined) {
        if ((end ?? pos) > opened.size) throw rangeError(what, offset, options.length, opened.size)
        end ??= opened.size
      }
      if (end !== undefined && pos >= end) return
      for await (let piece of opened.body) {
        if (piece.length === 0) continue
        if (end !== undefined && piece.length > end - pos) piece = piece.subarray(0, end - pos)
        pos += piece.length
        attempt.pause()
        yielding = true
        yield piece
        yielding = false
        signal?.throwIfAborted()
        if (end !== undefined && pos >= end) return
        attempt.touch()
      }
      if (end === undefined) return
      // A body that ended cleanly without telling the size ended where the object does.
      if (opened.size === undefined) throw rangeError(what, offset, options.length, pos)
      throw new OriginError(`${what}: the transfer ended after ${pos - started} bytes, ${end - pos} short`, { retryable: true })
    } catch (err) {
      if (yielding) throw err
      const e = attempt.settle(err, source.mapError)
      if (signal?.aborted === true || !isRetryable(e)) throw e
      if (pos > started) failures = 0
      if (++failures > retries) throw e
    } finally {
      opened?.cancel?.()
      attempt.dispose()
    }
    await sleep(backoffDelay(failures, retryDelayMs), signal)
  }
}

function rangeError (what: string, offset: number, length: number | undefined, size: number): OriginRangeError {
  const range = length === undefined ? `from byte ${offset}` : `bytes ${offset}-${offset + length - 1}`
  return new OriginRangeError(`${what}: ${range} asked for, but the object has ${size} bytes`)
}

function checkInteger (name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative integer, not ${n}`)
}
