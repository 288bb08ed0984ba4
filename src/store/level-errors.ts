import {
  ImgswarmError, StoreCorruptError, StoreFullError, StoreIoError, StoreLockedError, hasSystemCode
} from '../errors.js'

/**
 * Runs one LevelDB operation of the store in `dir`, turning its failure into our error for that
 * condition ({@link mapLevelError}); checks `signal` first, so an aborted caller starts nothing.
 */
export async function runLevel<T> (what: string, dir: string, fn: () => Promise<T>, options?: { signal?: AbortSignal }): Promise<T> {
  options?.signal?.throwIfAborted()
  try {
    return await fn()
  } catch (err) {
    throw mapLevelError(err, what, dir)
  }
}

/** Turns a LevelDB (classic-level) failure into our error for that condition, keeping it as `cause`. */
export function mapLevelError (err: unknown, what: string, dir: string): Error {
  if (err instanceof ImgswarmError) return err
  const codes = collectCodes(err)
  const text = collectMessages(err)
  if (codes.has('LEVEL_LOCKED') || /lock/i.test(text) && /(temporarily unavailable|already held)/i.test(text)) {
    return new StoreLockedError(`data dir ${dir} is in use by another imgswarm process (stop it, or use its API with IMGSWARM_API)`, { cause: err })
  }
  if (hasSystemCode(err, 'ENOSPC') || /no space left/i.test(text)) {
    return new StoreFullError(`${what}: no space left on the disk of ${dir}; nothing stored before was lost (free some space and retry)`, { cause: err })
  }
  if (hasSystemCode(err, 'EACCES') || /permission denied/i.test(text)) {
    return new StoreIoError(`${what}: permission denied in ${dir} (run imgswarm as the user that owns it, or use another --data)`, { cause: err })
  }
  if (codes.has('LEVEL_CORRUPTION') || /corrupt/i.test(text)) {
    return new StoreCorruptError(`${what}: the store in ${dir} is damaged (${firstLine(text)}); run 'imgswarm verify'`, { cause: err })
  }
  return new StoreIoError(`${what}: ${firstLine(text)}`, { cause: err })
}

function collectCodes (err: unknown): Set<string> {
  const codes = new Set<string>()
  for (let e: any = err, i = 0; e != null && i < 8; e = e.cause, i++) if (typeof e.code === 'string') codes.add(e.code)
  return codes
}

function collectMessages (err: unknown): string {
  const parts: string[] = []
  for (let e: any = err, i = 0; e != null && i < 8; e = e.cause, i++) if (typeof e.message === 'string') parts.push(e.message)
  return parts.join(': ')
}

function firstLine (s: string): string {
  return s.split('\n')[0]
}
