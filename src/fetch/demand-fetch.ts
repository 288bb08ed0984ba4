import type { VerifiedChunk } from '../chunks/cid.js'
import type { Origin } from '../origin/origin.js'
import type { Logger } from '../util/log.js'
import type { Demand } from './demand.js'
import { fetchFromOrigin } from './origin-chunks.js'
import { fetchFromPeers } from './peer-scheduler.js'
import { hasBit, type PeerSource } from './sources.js'
import type { Want } from './wants.js'
import type { Clock } from './clock.js'

/** What the demand loop needs of the fetch it runs inside (swarm-fetch.ts). */
export interface DemandContext {
  demand: Demand
  hex: string
  /** The want at a chunk index, while it is still to be fetched. */
  wantAt: (index: number) => Want | undefined
  /** How many wants are still to be fetched: the loop ends at zero. */
  remaining: () => number
  /** The live holders and what each held at the last poll. */
  holders: () => Array<{ source: PeerSource, have: Uint8Array }>
  origin?: Origin
  deliver: (chunks: VerifiedChunk[], wants: Want[]) => Promise<void>
  verified?: (chunk: VerifiedChunk, want: Want) => void
  received: (source: 'peer' | 'origin', bytes: number) => void
  badChunk: (peer: string) => void
  signal: AbortSignal
  log: Logger
  /** Default the real clock. */
  clock?: Clock
}

/** Urgent batches in flight at once (several readers, or one reader's reads in parallel). */
const MAX_URGENT = 4
/** Small batches for urgent chunks: the first bytes count, not the throughput. */
const URGENT_PEER_LIMITS = { windowPerPeer: 4, batchChunks: 4, batchBytes: 512 * 1024, stallMs: 5000 }
const URGENT_ORIGIN_LIMITS = { maxRangeBytes: 4 * 1024 * 1024, concurrency: 2 }

/**
 * Fetches the chunks readers wait for, as soon as they ask: from the live holders that have them,
 * else from the origin by their exact byte ranges. It runs beside the fetch's own loops, which keep
 * fetching the rest; a chunk both fetch is stored twice, harmlessly. A failure here fails nothing:
 * the chunk is still among the fetch's wants and arrives with the rest.
 */
export async function demandLoop (c: DemandContext): Promise<void> {
  const running = new Set<Promise<void>>()
  while (c.remaining() > 0 && !c.signal.aborted) {
    if (running.size >= MAX_URGENT) {
      await Promise.race(running)
      continue
    }
    await c.demand.next(250, c.signal, c.clock)
    const wants = new Map<string, Want>()
    for (const i of c.demand.take()) {
      const w = c.wantAt(i)
      if (w != null) wants.set(w.key, w)
    }
    if (wants.size === 0) continue
    const p: Promise<void> = c.demand.urgently(async () => { await fetchUrgent([...wants.values()], c) }).catch(err => {
      if (!c.signal.aborted) c.log.info('urgent chunks not fetched; they come with the rest', { image: `sha256:${c.hex}`, err })
    }).finally(() => { running.delete(p) })
    running.add(p)
  }
  await Promise.allSettled(running)
}

async function fetchUrgent (wants: Want[], c: DemandContext): Promise<void> {
  const holders = c.holders().map(h => ({ source: h.source, have: Uint8Array.from(h.have) }))
  const held = (w: Want): boolean => holders.some(h => w.indices.some(i => hasBit(h.have, i)))
  let orphans = wants.filter(w => !held(w))
  const fromPeers = wants.filter(held)
  if (fromPeers.length > 0) {
    const left = await fetchFromPeers(fromPeers, holders, {
      deliver: c.deliver,
      verified: c.verified,
      received: b => { c.received('peer', b) },
      badChunk: c.badChunk
    }, { signal: c.signal, limits: URGENT_PEER_LIMITS, log: c.log, clock: c.clock, urgent: true })
    orphans = [...orphans, ...left]
  }
  // Only chunks still wanted: the fetch's own loops may have brought some meanwhile.
  orphans = orphans.filter(w => w.indices.some(i => c.wantAt(i) === w))
  if (orphans.length > 0 && c.origin != null) {
    await fetchFromOrigin(c.origin, c.hex, orphans, {
      deliver: c.deliver,
      verified: c.verified,
      received: b => { c.received('origin', b) }
    }, { signal: c.signal, limits: URGENT_ORIGIN_LIMITS })
  }
}
