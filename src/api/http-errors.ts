import {
  AmbiguousRefError, BundleInvalidError, BundleUntrustedError, CacheFullError, DaemonStartingError, ImageNotAvailableError, ImageNotFoundError,
  ForbiddenError, ImageProtectedError, ImgswarmError, InputError, InvalidRefError, OperatorKeyError, OutputError, StoreFullError, UnauthorizedError, UsageError, errorClasses
} from '../errors.js'

/** The HTTP status for an error the API returns. */
export function statusOf (err: unknown): number {
  if (err instanceof ImageNotFoundError) return 404
  if (err instanceof InvalidRefError || err instanceof UsageError || err instanceof InputError || err instanceof OutputError) return 400
  if (err instanceof AmbiguousRefError || err instanceof ImageProtectedError || err instanceof ImageNotAvailableError) return 409
  if (err instanceof BundleInvalidError || err instanceof OperatorKeyError) return 422
  if (err instanceof BundleUntrustedError || err instanceof ForbiddenError) return 403
  if (err instanceof UnauthorizedError) return 401
  if (err instanceof StoreFullError || err instanceof CacheFullError) return 507
  if (err instanceof DaemonStartingError) return 503
  if ((err as Error)?.name === 'AbortError') return 499
  return 500
}

/** The JSON body of an error response: the same code and message a local call would raise. */
export function errorBody (err: unknown): { error: { code: string, message: string } } {
  if (err instanceof ImgswarmError) return { error: { code: err.code, message: err.message } }
  return { error: { code: 'IMGSWARM_INTERNAL', message: (err as Error)?.message ?? String(err) } }
}

/** Rebuilds the error class named by a response's code, so API clients see what local callers see. */
export function errorFromBody (body: unknown, status: number): Error {
  const e = (body as { error?: { code?: unknown, message?: unknown } } | null)?.error
  // Only strings are taken: `new Error(v)` runs String(v), which throws for a map with a `toString` key.
  const message = typeof e?.message === 'string' ? e.message : `the daemon answered HTTP ${status}`
  const code = typeof e?.code === 'string' ? e.code : 'IMGSWARM_API'
  const E = errorClasses.find(c => c.code === code)
  if (E != null) return new (E as unknown as new (m: string) => Error)(message)
  return new ImgswarmError(code, message)
}
