import { setMaxListeners } from 'node:events'
import type { VerifiedChunk } from '../chunks/cid.js'
import { NoSourceError, ProtocolUnsupportedError } from '../errors.js'
import type { Origin } from '../origin/origin.js'
import { silentLogger, type Logger } from '../util/log.js'
import { fetchFromOrigin, type OriginFetchLimits } from './origin-chunks.js'
import { fetchFromPeers, type PeerSchedulerLimits } from './peer-scheduler.js'
import type { Demand } from './demand.js'
import { demandLoop } from './demand-fetch.js'
import { rendezvousOwner } from './rendezvous.js'
import { HaveFeed, type PeerView } from './have-feeds.js'
import { hasBit, setBit, type HolderFinder, type PeerSource } from './sources.js'
import type { Want } from './wants.js'
import { realClock, withClockDeadline, type Clock } from './clock.js'

/** How a node shares the work of fetching one image with the other nodes fetching it. */
export interface SwarmLimits {
  /** How often peers of the previous release (no have-updates) are asked for their have-bitfields; the longest wait between looks at the views otherwise. */
  pollMs: number
  /** How often the list of holders is refreshed (it may come from the DHT). */
  holdersEveryMs: number
  /** Origin reads are shared out in groups of consecutive chunks of about this many bytes: small enough to spread a small image over many nodes. */
  groupBytes: number
  /**
   * A group's owner that has gained no chunk for this long (its pushed updates say so) is stalled:
   * the other nodes read its groups from the origin themselves. A node that itself receives nothing
   * for four times this long, with nothing in flight, reads what is left.
   */
  stallMs: number
  /** When other holders exist, the first origin read waits until this long has passed since the fetch began and since the last news of a fetching node, so that nodes starting together see each other. */
  settleMs: number
  /** Origin range reads in flight at once. */
  originConcurrency: number
  /** Most peers watched (have-updates streams or polls) at once for one image: the neighbours a node exchanges updates with. */
  maxWatched: number
  /** The fetching nodes with the best scores for the image that own its origin groups, agreed through the neighbours' have-updates (see candidates.ts). */
  candidates: number
}

export const DEFAULT_SWARM_LIMITS: Readonly<SwarmLimits> = Object.freeze({
  pollMs: 250,
  holdersEveryMs: 2000,
  groupBytes: 1024 * 1024,
  stallMs: 5000,
  settleMs: 500,
  originConcurrency: 2,
  maxWatched: 32,
  candidates: 32
})

export interface SwarmFetchOptions {
  /** This node's id (its PeerId), one of the rendezvous candidates. */
  self: string
  hex: string
  manifestCid: string
  chunkCount: number
  wants: Want[]
  holders: HolderFinder
  /**
   * This fetch's have-feed: its bitfield, pushed to the peers watched, and their views. The fetcher
   * keeps it open until the image is verified (so peers hear "complete"); without one, a private feed.
   */
  feed?: HaveFeed
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
  /** Time for every wait and deadline here; default the feed's clock, else the real one (the simulator passes a virtual one). */
  clock?: Clock
  /** How chunks from peers are checked (see PeerSchedulerOptions.verify). */
  verifyPeerChunk?: (expected: Uint8Array, bytes: Uint8Array) => VerifiedChunk
}

/** Listeners one fetch's signal may have at once before Node warns (see swarmFetch). */
const MAX_FETCH_LISTENERS = 1000

/** Rounds of neighbour fetches running at once, each over the chunks that became available at one look. */
const MAX_ROUNDS = 4
/**
 * The least time between two looks at the views while rounds run (pushed updates may wake the loop far
 * more often): a round started for every update would carry a chunk or two, and the few rounds in
 * flight would then leave the links idle between round trips. With no round running, a look is at once.
 */
const MIN_LOOK_MS = 250
/** A peer that did not know the image, or whose stream failed, is not asked again for this long. */
const REASK_MS = 10_000
/** The first origin read waits for news of fetching nodes to stop, but for at most this many settleMs. */
const MAX_SETTLE_WAITS = 10
/** How long the first origin read waits for the first answers of the peers watched. */
const FIRST_ANSWERS_MS = 1000

/**
 * Fetches the wanted chunks of one image together with the other nodes that are fetching or hold it.
 * Each holder found is watched: over a have-updates stream it pushes its bitfield once and then every
 * chunk it gains (a peer of the previous release is polled every `pollMs` instead), and chunks any
 * holder has come from the holders. Chunks no holder has are read from the origin once per cluster:
 * each group of consecutive chunks belongs to one of the candidates (the fetching nodes with the best
 * scores for the image, agreed through the have-updates), by rendezvous hashing; the others wait for
 * the owner's copy and take it from whoever has it. A candidate that gains nothing for `stallMs`
 * drops out, and its groups move to another.
 */
export async function swarmFetch (o: SwarmFetchOptions): Promise<void> {
  const limits = { ...DEFAULT_SWARM_LIMITS, ...o.limits }
  // The first loop to fail stops the others.
  const inner = new AbortController()
  const signal = AbortSignal.any([o.signal, inner.signal])
  // Every watch, poll, round and wait listens to it while it runs, all removed when they end: bounded
  // by maxWatched and MAX_ROUNDS, far above Node's default of 10, which would print a plain-text warning.
  setMaxListeners(MAX_FETCH_LISTENERS, signal)
  const log = o.log ?? silentLogger
  const clock = o.clock ?? o.feed?.clock ?? realClock
  const remaining = new Map(o.wants.map(w => [w.key, w]))
  const feed = o.feed ?? privateFeed(o)
  feed.runAs(o.self, limits.candidates, limits.stallMs)
  const busy = new Set<string>() // wants being fetched right now, by either loop
  const excluded = new Set<string>() // peers that failed or lied in this fetch
  const watching = new Map<string, Promise<void>>() // peers whose stream (or poll) runs now
  const quietUntil = new Map<string, number>() // peers not to ask again before then
  const legacy = new Set<string>() // peers of the previous release: polled
  // Never yet: a clock may start anywhere, at 0 too.
  let sourcesAt = -Infinity
  let firstLookAt = -Infinity
  let lastProgress = clock.now()
  let polled = false
  let readAny = false
  const started = clock.now()

  // Wakes every loop's wait once nothing remains (or the fetch is stopped): the fetch ends with its
  // last chunk, not at the next look.
  const finished = new AbortController()
  setMaxListeners(MAX_FETCH_LISTENERS, finished.signal)
  const finish = (): void => { finished.abort() }
  signal.addEventListener('abort', finish, { once: true })
  const deliver = async (chunks: VerifiedChunk[], ws: Want[]): Promise<void> => {
    await o.deliver(chunks, ws)
    for (const w of ws) remaining.delete(w.key)
    lastProgress = clock.now()
    if (remaining.size === 0) finish()
  }
  const sleep = async (ms: number): Promise<void> => {
    await clock.sleep(ms, finished.signal)
    signal.throwIfAborted()
  }
  const views = (): PeerView[] => [...feed.peers.values()].filter(v => !excluded.has(v.source.id) && v.source.id !== o.self)
  const heldBy = (have: Uint8Array, w: Want): boolean => w.indices.some(i => hasBit(have, i))
  const held = (w: Want, vs = views()): boolean => vs.some(v => heldBy(v.have, w))

  // A peer of the previous release: its `have` every pollMs, while this fetch runs.
  const pollPeer = async (source: PeerSource): Promise<void> => {
    while (remaining.size > 0 && !signal.aborted && !excluded.has(source.id)) {
      const have = await withClockDeadline(clock, Math.max(2000, limits.pollMs * 4), signal, async s => await source.have(o.manifestCid, o.chunkCount, { signal: s })).catch(() => undefined)
      if (have == null) {
        feed.peerGone(source.id, feed.peers.get(source.id)?.source)
        quietUntil.set(source.id, clock.now() + REASK_MS)
        return
      }
      const view = feed.setPeer(source, have.bits, have.fetching)
      if (!view.fetching) return // it holds what it holds; asked again at the next refresh of holders
      await sleep(limits.pollMs).catch(() => {})
    }
  }
  const watch = (source: PeerSource): void => {
    const run = async (): Promise<void> => {
      if (source.watchHave != null && !legacy.has(source.id)) {
        try {
          const known = await source.watchHave(feed, { signal })
          if (!known) quietUntil.set(source.id, clock.now() + REASK_MS)
          return
        } catch (err) {
          if (signal.aborted) return
          if (!(err instanceof ProtocolUnsupportedError)) {
            log.debug('have-updates stream failed', { peer: source.id, err })
            quietUntil.set(source.id, clock.now() + Math.min(REASK_MS, limits.holdersEveryMs))
            return
          }
          legacy.add(source.id)
        }
      }
      await pollPeer(source)
    }
    const p = run().finally(() => { watching.delete(source.id) })
    watching.set(source.id, p)
  }
  // Finds holders and watches the new ones (a peer that opened a stream to us is in the feed already).
  const discover = async (): Promise<void> => {
    const sources = (await o.holders.findHolders(o.hex, { signal }).catch(() => [] as PeerSource[])).filter(s => s.id !== o.self)
    const now = clock.now()
    for (const s of sources) {
      if (watching.size >= limits.maxWatched) break
      if (watching.has(s.id) || feed.peers.has(s.id) || excluded.has(s.id) || (quietUntil.get(s.id) ?? 0) > now) continue
      watch(s)
    }
  }

  // Neighbours: whatever they hold. Each look starts a round for what became available since, while
  // earlier rounds still run (up to MAX_ROUNDS), so chunks flow on without waiting for a round to end.
  const rounds = new Set<Promise<void>>()
  const load = new Map<string, number>() // batches in flight to each peer, over every round
  const round = async (batch: Want[], vs: PeerView[]): Promise<void> => {
    try {
      await fetchFromPeers(batch, vs.map(v => ({ source: v.source, have: Uint8Array.from(v.have) })), {
        deliver,
        verified: o.verified,
        received: b => { o.received('peer', b) },
        badChunk: peer => { excluded.add(peer); o.badChunk(peer) },
        peerOut: peer => { excluded.add(peer) }
      }, { signal, limits: o.peerLimits, log, clock, yieldTo: o.demand, load, verify: o.verifyPeerChunk })
    } finally {
      for (const w of batch) busy.delete(w.key)
    }
  }
  const peerLoop = async (): Promise<void> => {
    while (remaining.size > 0) {
      if (clock.now() - sourcesAt >= limits.holdersEveryMs) {
        await discover()
        sourcesAt = clock.now()
        if (firstLookAt === -Infinity) firstLookAt = sourcesAt
      }
      // The origin waits for the first answers of the peers watched (or a second), to know who fetches too.
      polled ||= clock.now() - firstLookAt >= FIRST_ANSWERS_MS || [...watching.keys()].every(id => feed.peers.has(id))
      if (rounds.size < MAX_ROUNDS) {
        const vs = views()
        const batch = [...remaining.values()].filter(w => !busy.has(w.key) && held(w, vs))
        if (batch.length > 0) {
          for (const w of batch) busy.add(w.key)
          const r: Promise<void> = round(batch, vs).finally(() => { rounds.delete(r) })
          r.catch(() => {}) // observed by the race below (or the final wait); never left unhandled
          rounds.add(r)
        }
      }
      const looked = clock.now()
      // Woken by a pushed update, a round's end, or pollMs (old peers' polls, the next refresh of holders).
      await Promise.race(rounds.size < MAX_ROUNDS ? [feed.nextChange(limits.pollMs, finished.signal), ...rounds] : [...rounds])
      signal.throwIfAborted()
      if (rounds.size > 0 && clock.now() - looked < MIN_LOOK_MS) await Promise.race([sleep(MIN_LOOK_MS - (clock.now() - looked)), ...rounds])
    }
    await Promise.all(rounds)
  }

  // The origin: the groups this node owns, then, once the swarm stalls, any group left.
  const groupOf = (w: Want): number => Math.floor(w.offset / limits.groupBytes)
  // Owners by group for the last set of candidates: it changes only when a candidate comes, goes or
  // stalls, and a hash per candidate per orphan chunk at every look costs CPU a starved machine lacks.
  const owners = new Map<number, string | undefined>()
  let ownersFor = ''
  const ownersAmong = (candidates: string[]): (g: number) => string | undefined => {
    const set = candidates.join('\n')
    if (set !== ownersFor) { owners.clear(); ownersFor = set }
    return g => {
      if (!owners.has(g)) owners.set(g, rendezvousOwner(`${o.hex}:${g}`, candidates))
      return owners.get(g)
    }
  }
  // A group another node is reading now: a fetching peer gained one of its chunks within stallMs, one
  // that this node did not read from the origin itself (its neighbours copy those). An owner that
  // inherits such a group (a candidate joined, and rendezvous moved it) leaves it to that reader until
  // the reader stalls, instead of reading the rest a second time.
  const wantsOfGroup = new Map<number, Want[]>()
  for (const w of o.wants) {
    const ws = wantsOfGroup.get(groupOf(w))
    if (ws == null) wantsOfGroup.set(groupOf(w), [w])
    else ws.push(w)
  }
  const readHere = new Set<string>()
  const readElsewhere = (g: number, now: number): boolean =>
    (wantsOfGroup.get(g) ?? []).some(w => !readHere.has(w.key) && w.indices.some(i => now - feed.gainedAt[i] <= limits.stallMs))
  const nextGroup = (): Want[] | undefined => {
    // The best live candidates this node knows, the same at every node once the have-updates have
    // carried them across the mesh; one that stalls drops out and its groups move to another.
    const candidates = feed.claims().map(c => c.id).sort()
    const ownerOf = ownersAmong(candidates)
    const vs = views()
    const now = clock.now()
    const starved = now - lastProgress > 4 * limits.stallMs && busy.size === 0
    const orphans = [...remaining.values()].filter(w => !busy.has(w.key) && !held(w, vs)).sort((a, b) => a.offset - b.offset)
    for (const w of orphans) {
      const g = groupOf(w)
      const mine = ownerOf(g) === o.self && !readElsewhere(g, now)
      if (mine || starved) {
        log.debug('origin read', { image: `sha256:${o.hex}`, group: g, why: mine ? 'owner' : 'starved', candidates: candidates.length })
        return orphans.filter(x => groupOf(x) === g)
      }
    }
    return undefined
  }
  const originLoop = async (): Promise<void> => {
    const origin = o.origin
    while (remaining.size > 0) {
      // Before the first read, the candidates must have settled: settleMs with no news of a fetching
      // node (at most MAX_SETTLE_WAITS of it): a node that reads while it knows few of them owns
      // groups that another node, knowing more, reads too (under load, fetches begin seconds apart).
      const othersKnown = feed.peers.size > 0 || watching.size > 0
      const now = clock.now()
      const settling = !readAny && othersKnown && (now - started < limits.settleMs || (now - feed.newsAt < limits.settleMs && now - started < MAX_SETTLE_WAITS * limits.settleMs))
      if (!polled || settling) {
        await sleep(Math.min(limits.pollMs, 50))
        continue
      }
      if (origin == null) {
        // Only neighbours can help; give up once nothing arrives and nobody holds what is left.
        const vs = views()
        const stuck = clock.now() - lastProgress > limits.stallMs && busy.size === 0 && ![...remaining.values()].some(w => held(w, vs))
        if (stuck) throw new NoSourceError(`${remaining.size} chunks of sha256:${o.hex} are held by no reachable peer and no origin is configured`)
        await sleep(limits.pollMs)
        continue
      }
      // A reader's chunks first: on a thin link a group read now would queue ahead of them.
      if (o.demand?.busy === true) {
        await o.demand.quiet(limits.pollMs, finished.signal, clock)
        signal.throwIfAborted()
        continue
      }
      const group = nextGroup()
      if (group == null) {
        await sleep(limits.pollMs)
        continue
      }
      for (const w of group) busy.add(w.key)
      readAny = true
      try {
        const stored = async (chunks: VerifiedChunk[], ws: Want[]): Promise<void> => {
          for (const w of ws) readHere.add(w.key)
          await deliver(chunks, ws)
        }
        await fetchFromOrigin(origin, o.hex, group, { deliver: stored, verified: o.verified, received: b => { o.received('origin', b) } }, { signal, limits: o.originLimits, clock })
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
      holders: () => views(),
      origin: o.origin,
      deliver,
      verified: o.verified,
      received: o.received,
      badChunk: peer => { excluded.add(peer); o.badChunk(peer) },
      signal,
      log,
      clock
    })
  }
  // Wait for every loop to stop (the first failure aborts the others), so nothing still writes when this returns.
  if (remaining.size === 0) finish()
  const results = await Promise.allSettled([guard(peerLoop), ...Array.from({ length: limits.originConcurrency }, async () => { await guard(originLoop) }), ...(o.demand != null ? [guard(urgent)] : [])])
  signal.removeEventListener('abort', finish)
  const failed = results.find(r => r.status === 'rejected')
  if (failed != null) throw (inner.signal.reason ?? failed.reason)
}

/** A feed for a fetch run without the fetcher's: this node's bitfield from what it still wants. */
function privateFeed (o: SwarmFetchOptions): HaveFeed {
  const bits = new Uint8Array(Math.ceil(o.chunkCount / 8))
  const wanted = new Set(o.wants.flatMap(w => w.indices))
  for (let i = 0; i < o.chunkCount; i++) if (!wanted.has(i)) setBit(bits, i)
  return new HaveFeed(o.manifestCid, o.chunkCount, bits, o.clock)
}
