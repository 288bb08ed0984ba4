import { setMaxListeners } from 'node:events'
import type { VerifiedChunk } from '../chunks/cid.js'
import { NoSourceError } from '../errors.js'
import type { Origin } from '../origin/origin.js'
import { silentLogger, type Logger } from '../util/log.js'
import { fetchFromOrigin, type OriginFetchLimits } from './origin-chunks.js'
import { fetchFromPeers, type PeerSchedulerLimits } from './peer-scheduler.js'
import type { Demand } from './demand.js'
import { demandLoop } from './demand-fetch.js'
import { rendezvousOwner } from './rendezvous.js'
import { hasBit, type HolderFinder, type PeerSource } from './sources.js'
import type { Want } from './wants.js'

/** How a node shares the work of fetching one image with the other nodes fetching it. */
export interface SwarmLimits {
  /** How often the holders' have-bitfields are asked for again while the fetch runs. */
  pollMs: number
  /** How often the list of holders is refreshed (it may come from the DHT). */
  holdersEveryMs: number
  /** Origin reads are shared out in groups of consecutive chunks of about this many bytes: small enough to spread a small image over many nodes. */
  groupBytes: number
  /**
   * With no chunk arriving from anywhere for this long, a node stops waiting for the owners of the
   * remaining groups and reads them from the origin itself.
   */
  stallMs: number
  /** When other holders exist, the first origin read waits this long so that nodes starting together see each other. */
  settleMs: number
  /** Origin range reads in flight at once. */
  originConcurrency: number
}

export const DEFAULT_SWARM_LIMITS: Readonly<SwarmLimits> = Object.freeze({
  pollMs: 250,
  holdersEveryMs: 2000,
  groupBytes: 1024 * 1024,
  stallMs: 5000,
  settleMs: 500,
  originConcurrency: 2
})

export interface SwarmFetchOptions {
  /** This node's id (its PeerId), one of the rendezvous candidates. */
  self: string
  hex: string
  manifestCid: string
  chunkCount: number
  wants: Want[]
  holders: HolderFinder
  origin?: Origin
  deliver: (chunks: VerifiedChunk[], wants: Want[]) => Promise<void>
  /** Each chunk the moment it is verified, before it is stored. */
  verified?: (chunk: VerifiedChunk, want: Want) => void
  received: (source: 'peer' | 'origin', bytes: number) => void
  badChunk: (peer: string) => void
  signal: AbortSignal
  log?: Logger
  limits?: Partial<SwarmLimits>
  peerLimits?: Partial<PeerSchedulerLimits>
  originLimits?: Partial<OriginFetchLimits>
  /** Chunks that readers wait for: fetched first, beside the rest (see demand-fetch.ts). */
  demand?: Demand
}

interface Holder { source: PeerSource, have: Uint8Array, fetching: boolean }

/** Listeners one fetch's signal may have at once before Node warns (see swarmFetch). */
const MAX_FETCH_LISTENERS = 1000

/** Rounds of neighbour fetches running at once, each over the chunks that became available at one poll. */
const MAX_ROUNDS = 4

/**
 * Fetches the wanted chunks of one image together with the other nodes that are fetching or hold it.
 * Chunks any holder has come from the holders (their have-bitfields are asked for again every
 * `pollMs`, so chunks that other fetching nodes just received are found). Chunks no holder has are
 * read from the origin once per cluster: each group of consecutive chunks belongs to one of the nodes
 * that know the image, by rendezvous hashing; the others wait for the owner's copy and take it from
 * the owner, until nothing has arrived for `stallMs`, when they read what is left themselves.
 */
export async function swarmFetch (o: SwarmFetchOptions): Promise<void> {
  const limits = { ...DEFAULT_SWARM_LIMITS, ...o.limits }
  // The first loop to fail stops the others.
  const inner = new AbortController()
  const signal = AbortSignal.any([o.signal, inner.signal])
  // Every batch in flight to every peer, every origin range read and its retry wait, the holder
  // lookups and the poll's sleep each listen on this one signal while they run: dozens at once in a
  // busy fetch, all removed when they end. Node's default bound of 10 would print a plain-text
  // MaxListenersExceededWarning into the daemon's JSON log for what is no leak.
  setMaxListeners(MAX_FETCH_LISTENERS, signal)
  const log = o.log ?? silentLogger
  const remaining = new Map(o.wants.map(w => [w.key, w]))
  const busy = new Set<string>() // wants being fetched right now, by either loop
  const excluded = new Set<string>() // peers that failed or lied in this fetch
  let holders: Holder[] = []
  let sources: PeerSource[] = []
  let sourcesAt = 0
  let lastProgress = Date.now()
  let polled = false
  const started = Date.now()

  const deliver = async (chunks: VerifiedChunk[], ws: Want[]): Promise<void> => {
    await o.deliver(chunks, ws)
    for (const w of ws) remaining.delete(w.key)
    lastProgress = Date.now()
  }
  const sleep = async (ms: number): Promise<void> => {
    await new Promise<void>(resolve => {
      const wake = (): void => { clearTimeout(timer); signal.removeEventListener('abort', wake); resolve() }
      const timer = setTimeout(wake, ms)
      signal.addEventListener('abort', wake, { once: true })
    })
    signal.throwIfAborted()
  }
  const heldBy = (h: Holder, w: Want): boolean => w.indices.some(i => hasBit(h.have, i))
  const held = (w: Want): boolean => holders.some(h => heldBy(h, w))

  const poll = async (): Promise<void> => {
    if (Date.now() - sourcesAt >= limits.holdersEveryMs) {
      sources = (await o.holders.findHolders(o.hex, { signal: signal }).catch(() => [] as PeerSource[])).filter(s => s.id !== o.self)
      sourcesAt = Date.now()
    }
    const answers = await Promise.all(sources.filter(s => !excluded.has(s.id)).map(async source => {
      const have = await source.have(o.manifestCid, o.chunkCount, { signal: AbortSignal.any([signal, AbortSignal.timeout(Math.max(2000, limits.pollMs * 4))]) }).catch(() => undefined)
      return have == null ? undefined : { source, have: have.bits, fetching: have.fetching }
    }))
    holders = answers.filter(a => a != null)
    polled = true
  }

  // Neighbours: whatever they hold. Each poll starts a round for what became available since, while
  // earlier rounds still run (up to MAX_ROUNDS), so chunks flow on without waiting for a round to end.
  const rounds = new Set<Promise<void>>()
  const round = async (batch: Want[]): Promise<void> => {
    try {
      await fetchFromPeers(batch, holders.filter(h => !excluded.has(h.source.id)).map(h => ({ source: h.source, have: Uint8Array.from(h.have) })), {
        deliver,
        verified: o.verified,
        received: b => { o.received('peer', b) },
        badChunk: peer => { excluded.add(peer); o.badChunk(peer) },
        peerOut: peer => { excluded.add(peer) }
      }, { signal, limits: o.peerLimits, log })
    } finally {
      for (const w of batch) busy.delete(w.key)
    }
  }
  const peerLoop = async (): Promise<void> => {
    while (remaining.size > 0) {
      await poll()
      const batch = rounds.size < MAX_ROUNDS ? [...remaining.values()].filter(w => !busy.has(w.key) && held(w)) : []
      if (batch.length > 0) {
        for (const w of batch) busy.add(w.key)
        const r: Promise<void> = round(batch).finally(() => { rounds.delete(r) })
        r.catch(() => {}) // observed by the race below (or the final wait); never left unhandled
        rounds.add(r)
      }
      await Promise.race([sleep(limits.pollMs), ...rounds])
    }
    await Promise.all(rounds)
  }

  // The origin: the groups this node owns, then, once the swarm stalls, any group left.
  const groupOf = (w: Want): number => Math.floor(w.offset / limits.groupBytes)
  const nextGroup = (): Want[] | undefined => {
    // The nodes fetching the image now share its origin reads; a node that only holds part does not.
    const knowers = [o.self, ...holders.filter(h => h.fetching).map(h => h.source.id)]
    const stalled = Date.now() - lastProgress > limits.stallMs
    const orphans = [...remaining.values()].filter(w => !busy.has(w.key) && !held(w)).sort((a, b) => a.offset - b.offset)
    for (const w of orphans) {
      const g = groupOf(w)
      const mine = rendezvousOwner(`${o.hex}:${g}`, knowers) === o.self
      if (stalled || mine) {
        log.debug('origin read', { image: `sha256:${o.hex}`, group: g, why: mine ? 'owner' : 'stalled', fetchingPeers: knowers.length - 1 })
        return orphans.filter(x => groupOf(x) === g)
      }
    }
    return undefined
  }
  const originLoop = async (): Promise<void> => {
    const origin = o.origin
    while (remaining.size > 0) {
      const othersKnown = holders.length > 0 || sources.length > 0
      if (!polled || (othersKnown && Date.now() - started < limits.settleMs)) {
        await sleep(Math.min(limits.pollMs, 50))
        continue
      }
      if (origin == null) {
        // Only neighbours can help; give up once nothing arrives and nobody holds what is left.
        const stuck = Date.now() - lastProgress > limits.stallMs && busy.size === 0 && ![...remaining.values()].some(held)
        if (stuck) throw new NoSourceError(`${remaining.size} chunks of sha256:${o.hex} are held by no reachable peer and no origin is configured`)
        await sleep(limits.pollMs)
        continue
      }
      const group = nextGroup()
      if (group == null) {
        await sleep(limits.pollMs)
        continue
      }
      for (const w of group) busy.add(w.key)
      try {
        await fetchFromOrigin(origin, o.hex, group, { deliver, verified: o.verified, received: b => { o.received('origin', b) } }, { signal: signal, limits: o.originLimits })
      } finally {
        for (const w of group) busy.delete(w.key)
      }
    }
  }

  const guard = async (loop: () => Promise<void>): Promise<void> => {
    try {
      await loop()
    } catch (err) {
      inner.abort(err)
      throw err
    }
  }
  // Chunks a reader waits for: taken as soon as asked, from the holders, else the origin.
  const byIndex = new Map<number, Want>()
  if (o.demand != null) for (const w of o.wants) for (const i of w.indices) byIndex.set(i, w)
  const urgent = async (): Promise<void> => {
    await demandLoop({
      demand: o.demand!,
      hex: o.hex,
      wantAt: i => { const w = byIndex.get(i); return w != null && remaining.has(w.key) ? w : undefined },
      remaining: () => remaining.size,
      holders: () => holders.filter(h => !excluded.has(h.source.id)),
      origin: o.origin,
      deliver,
      verified: o.verified,
      received: o.received,
      badChunk: peer => { excluded.add(peer); o.badChunk(peer) },
      signal,
      log
    })
  }
  // Wait for every loop to stop (the first failure aborts the others), so nothing still writes when this returns.
  const results = await Promise.allSettled([guard(peerLoop), ...Array.from({ length: limits.originConcurrency }, async () => { await guard(originLoop) }), ...(o.demand != null ? [guard(urgent)] : [])])
  const failed = results.find(r => r.status === 'rejected')
  if (failed != null) throw (inner.signal.reason ?? failed.reason)
}
