/** A signal that aborts at a deadline or with its parent, and the call that frees its timer and listener. */
export interface Deadline {
  signal: AbortSignal
  /** Stops the timer and forgets the parent: call it when the work ends, whichever way. */
  clear: () => void
}

/**
 * Aborts after `ms` with a `TimeoutError` (as `AbortSignal.timeout` does), or when `parent` aborts,
 * with its reason. Node 20's `AbortSignal.any` holds its sources only weakly, and an
 * `AbortSignal.timeout` that nothing else holds can be garbage-collected with its timer: the combined
 * signal then never fires, and a lookup with no other bound waits forever (nodejs/node#57736). Here the
 * timer holds the controller until it fires or is cleared.
 *
 * @example
 * const d = deadline(5000, options.signal)
 * try { await lookup({ signal: d.signal }) } finally { d.clear() }
 */
export function deadline (ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController()
  const onParent = (): void => { controller.abort(parent?.reason) }
  const timer = setTimeout(() => {
    controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError'))
    parent?.removeEventListener('abort', onParent)
  }, ms)
  if (parent?.aborted === true) onParent()
  else parent?.addEventListener('abort', onParent, { once: true })
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer)
      parent?.removeEventListener('abort', onParent)
    }
  }
}

/** Runs `fn` under {@link deadline}, clearing it when `fn` settles. */
export async function withDeadline<T> (ms: number, parent: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const d = deadline(ms, parent)
  try {
    return await fn(d.signal)
  } finally {
    d.clear()
  }
}
