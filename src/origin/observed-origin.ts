import { OriginAccessDeniedError, OriginNotFoundError, OriginRangeError, OriginTimeoutError } from '../errors.js'
import type { Origin, OriginCallOptions, OriginReadOptions } from './origin.js'

/** What an origin call was doing when it failed: a fixed list, so metric labels stay bounded. */
export type OriginOp = 'stat' | 'read' | 'manifest' | 'write'
/** Why it failed, from the error's class. */
export type OriginFailure = 'not_found' | 'access_denied' | 'timeout' | 'range' | 'other'

/**
 * `inner` reporting each failed call to `failed` (the daemon counts them in
 * `imgswarm_origin_errors_total`). A call the caller aborted is not the origin's failure and is not
 * reported; the error is rethrown unchanged either way.
 */
export function observedOrigin (inner: Origin, failed: (op: OriginOp, why: OriginFailure) => void): Origin {
  const watch = async <T>(op: OriginOp, options: OriginCallOptions | undefined, call: () => Promise<T>): Promise<T> => {
    try {
      return await call()
    } catch (err) {
      if (options?.signal?.aborted !== true) failed(op, failureOf(err))
      throw err
    }
  }
  const write = inner.write
  const writeManifest = inner.writeManifest
  const readProfile = inner.readProfile
  const writeProfile = inner.writeProfile
  return {
    url: inner.url,
    // A getter: a backend may learn at run time that its server ignores Range.
    get capabilities () { return inner.capabilities },
    stat: async (hex, options) => await watch('stat', options, async () => await inner.stat(hex, options)),
    read: (hex: string, options?: OriginReadOptions) => ({
      async * [Symbol.asyncIterator] () {
        try {
          yield * inner.read(hex, options)
        } catch (err) {
          if (options?.signal?.aborted !== true) failed('read', failureOf(err))
          throw err
        }
      }
    }),
    readManifest: async (hex, options) => await watch('manifest', options, async () => await inner.readManifest(hex, options)),
    ...(write != null ? { write: async (hex, source, options) => await watch('write', options, async () => await write.call(inner, hex, source, options)) } : {}),
    ...(writeManifest != null ? { writeManifest: async (hex, bytes, options) => { await watch('write', options, async () => { await writeManifest.call(inner, hex, bytes, options) }) } } : {}),
    ...(readProfile != null ? { readProfile: async (hex, options) => await watch('manifest', options, async () => await readProfile.call(inner, hex, options)) } : {}),
    ...(writeProfile != null ? { writeProfile: async (hex, bytes, options) => { await watch('write', options, async () => { await writeProfile.call(inner, hex, bytes, options) }) } } : {}),
    ...(inner.close != null ? { close: inner.close.bind(inner) } : {})
  }
}

function failureOf (err: unknown): OriginFailure {
  if (err instanceof OriginNotFoundError) return 'not_found'
  if (err instanceof OriginAccessDeniedError) return 'access_denied'
  if (err instanceof OriginTimeoutError) return 'timeout'
  if (err instanceof OriginRangeError) return 'range'
  return 'other'
}
