import { TokenBucket } from '../util/token-bucket.js'
import type { Origin, OriginReadOptions } from './origin.js'

/**
 * `inner` with its reads (image bytes and manifests) sharing one token bucket of `bytesPerSecond`, so
 * that all fetches together read from the origin at most that fast (`--max-origin-rate`). Each piece is
 * paid for as it arrives, before it is handed on: a read runs at the cap, without a long pause after a burst.
 */
export function rateLimitedOrigin (inner: Origin, bytesPerSecond: number): Origin {
  const bucket = new TokenBucket(bytesPerSecond, burstFor(bytesPerSecond))
  return {
    url: inner.url,
    // A getter: a backend may learn at run time that its server ignores Range.
    get capabilities () { return inner.capabilities },
    stat: inner.stat.bind(inner),
    read: (hex: string, options?: OriginReadOptions) => ({
      async * [Symbol.asyncIterator] () {
        for await (const piece of inner.read(hex, options)) {
          await bucket.take(piece.length, { signal: options?.signal })
          yield piece
        }
      }
    }),
    readManifest: async (hex, options) => {
      const bytes = await inner.readManifest(hex, options)
      if (bytes != null) await bucket.take(bytes.length, { signal: options?.signal })
      return bytes
    },
    ...(inner.write != null ? { write: inner.write.bind(inner) } : {}),
    ...(inner.writeManifest != null ? { writeManifest: inner.writeManifest.bind(inner) } : {}),
    ...(inner.readProfile != null ? { readProfile: inner.readProfile.bind(inner) } : {}),
    ...(inner.writeProfile != null ? { writeProfile: inner.writeProfile.bind(inner) } : {}),
    ...(inner.close != null ? { close: inner.close.bind(inner) } : {})
  }
}

/** A tenth of a second at the rate, at least 1 MiB: smooth, and never below one piece of a read. */
export function burstFor (bytesPerSecond: number): number {
  return Math.max(bytesPerSecond / 10, 1024 * 1024)
}
