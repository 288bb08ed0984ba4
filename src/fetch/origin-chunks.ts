import { verifyChunk, type VerifiedChunk } from '../chunks/cid.js'
import { OriginError } from '../errors.js'
import type { Origin } from '../origin/origin.js'
import type { Want } from './wants.js'
import { realClock, type Clock } from './clock.js'

export interface OriginFetchEvents {
  /** Verified chunks, to be stored before the call returns. */
  deliver: (chunks: VerifiedChunk[], wants: Want[]) => Promise<void>
  /** Bytes received from the origin, counted whether or not they were usable. */
  received: (bytes: number) => void
  /** Each chunk the moment it is verified, before its batch is stored (a streaming reader takes it). */
  verified?: (chunk: VerifiedChunk, want: Want) => void
}

export interface OriginFetchLimits {
  /** Largest single range request; adjacent chunks are coalesced up to it. */
  maxRangeBytes: number
  /** Range requests in flight at once. */
  concurrency: number
  /**
   * Verified chunks are stored in batches of about this many bytes. Neighbours hear of chunks only
   * once they are stored, so a batch as large as an origin group (1 MiB) would hold every group's
   * chunks back from the swarm until the whole group had arrived.
   */
  deliverBytes: number
  /**
   * A chunk that arrives this long after the last batch was stored is stored at once, with what
   * waits: a slow (or shared) origin's chunks reach the neighbours one by one, a fast one's in batches.
   */
  deliverMs: number
}

export const DEFAULT_ORIGIN_LIMITS: Readonly<OriginFetchLimits> = Object.freeze({
  maxRangeBytes: 16 * 1024 * 1024,
  concurrency: 3,
  deliverBytes: 256 * 1024,
  deliverMs: 5
})

interface Span { offset: number, length: number, wants: Want[] }

/** Adjacent wants (by image offset) merged into ranges of at most `max` bytes. */
export function coalesce (wants: Want[], max: number): Span[] {
  const spans: Span[] = []
  for (const w of [...wants].sort((a, b) => a.offset - b.offset)) {
    const last = spans.at(-1)
    if (last != null && last.offset + last.length === w.offset && last.length + w.length <= max) {
      last.length += w.length
      last.wants.push(w)
    } else {
      spans.push({ offset: w.offset, length: w.length, wants: [w] })
    }
  }
  return spans
}

/**
 * Reads exactly the bytes of the wanted chunks from the origin — Range reads of coalesced spans where
 * the origin supports ranges, else one whole read that keeps only what is wanted — and verifies every
 * chunk against its digest before it is delivered.
 */
export async function fetchFromOrigin (origin: Origin, hex: string, wants: Want[], events: OriginFetchEvents, options: { signal?: AbortSignal, limits?: Partial<OriginFetchLimits>, clock?: Clock } = {}): Promise<void> {
  if (wants.length === 0) return
  const limits = { ...DEFAULT_ORIGIN_LIMITS, ...options.limits }
  const clock = options.clock ?? realClock
  if (!origin.capabilities.rangeRead) {
    const end = Math.max(...wants.map(w => w.offset + w.length))
    await readSpan(origin, hex, { offset: 0, length: end, wants }, events, limits, clock, options.signal, true)
    return
  }
  const spans = coalesce(wants, limits.maxRangeBytes)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < spans.length) {
      options.signal?.throwIfAborted()
      await readSpan(origin, hex, spans[next++], events, limits, clock, options.signal, false)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limits.concurrency, spans.length) }, worker))
}

/** Reads one span and cuts it into the wanted chunks; with `sparse`, bytes between wants are skipped. */
async function readSpan (origin: Origin, hex: string, span: Span, events: OriginFetchEvents, limits: OriginFetchLimits, clock: Clock, signal: AbortSignal | undefined, sparse: boolean): Promise<void> {
  const wants = [...span.wants].sort((a, b) => a.offset - b.offset)
  let wi = 0
  let pos = span.offset // image offset of the next byte to arrive
  let parts: Uint8Array[] = []
  let partBytes = 0
  let batch: VerifiedChunk[] = []
  let batchWants: Want[] = []
  let batchBytes = 0
  let flushedAt = clock.now()
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    const [chunks, ws] = [batch, batchWants]
    batch = []
    batchWants = []
    batchBytes = 0
    await events.deliver(chunks, ws)
    flushedAt = clock.now()
  }
  for await (const piece of origin.read(hex, { offset: span.offset, length: span.length, signal })) {
    events.received(piece.length)
    let p = 0
    while (p < piece.length && wi < wants.length) {
      const w = wants[wi]
      if (pos < w.offset) {
        // Only a whole-image read has gaps: skip to the next wanted chunk.
        const skip = Math.min(w.offset - pos, piece.length - p)
        if (!sparse) throw new OriginError(`origin ${origin.url} answered a range of ${hex} with a gap`)
        p += skip
        pos += skip
        continue
      }
      const take = Math.min(w.length - partBytes, piece.length - p)
      parts.push(piece.subarray(p, p + take))
      partBytes += take
      p += take
      pos += take
      if (partBytes === w.length) {
        const bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts, partBytes)
        const chunk = verifyChunk(w.digest, bytes)
        batch.push(chunk)
        batchWants.push(w)
        events.verified?.(chunk, w)
        batchBytes += bytes.length
        parts = []
        partBytes = 0
        wi++
        if (batchBytes >= limits.deliverBytes || clock.now() - flushedAt >= limits.deliverMs) await flush()
      }
    }
    if (wi === wants.length) break
  }
  await flush()
  if (wi < wants.length) throw new OriginError(`origin ${origin.url} ended sha256:${hex} before byte ${wants[wi].offset + wants[wi].length}`)
}
