import { verifyChunk, type VerifiedChunk } from '../chunks/cid.js'
import { ChunkCorruptError } from '../errors.js'
import type { Logger } from '../util/log.js'
import { hasBit, type PeerSource } from './sources.js'
import type { Want } from './wants.js'
import { realClock, type Clock } from './clock.js'
import type { Urgency } from './demand.js'

/** Bounds of the work given to one peer. Each is a trade-off between pipelining and fairness. */
export interface PeerSchedulerLimits {
  /** Batches in flight to one peer at once: enough to hide a round trip behind the transfer. */
  windowPerPeer: number
  /** Chunks in one request (the wire protocol's batch limit bounds it too). */
  batchChunks: number
  /** Bytes in one request, so one slow peer holds back little. */
  batchBytes: number
  /** A batch that receives nothing for this long is abandoned and its chunks go to other holders. */
  stallMs: number
  /** Batches in flight at once over all peers (and every call sharing `load`): more would only split the download link finer. */
  maxInflight: number
}

export const DEFAULT_PEER_LIMITS: Readonly<PeerSchedulerLimits> = Object.freeze({
  windowPerPeer: 4,
  batchChunks: 32,
  batchBytes: 4 * 1024 * 1024,
  stallMs: 10_000,
  maxInflight: 8
})

/** What the scheduler reports as it goes. */
export interface PeerSchedulerEvents {
  /** Verified chunks from a peer, to be stored before the call returns. */
  deliver: (chunks: VerifiedChunk[], wants: Want[], peer: string) => Promise<void>
  /** Each chunk the moment it is verified, before its batch is stored (a streaming reader takes it). */
  verified?: (chunk: VerifiedChunk, want: Want) => void
  /** Bytes received from a peer, counted whether or not they were usable. */
  received: (bytes: number, peer: string) => void
  /** A peer sent bytes that do not match the digest it was asked for. */
  badChunk: (peer: string) => void
  /** A peer failed or stalled and gets no more work from this call. */
  peerOut?: (peer: string) => void
}

interface PeerState {
  source: PeerSource
  have: Uint8Array
  inflight: number
  /** Dead: failed or too slow. Bad: sent a corrupt chunk. Either way it gets no more work in this fetch. */
  out: 'dead' | 'bad' | undefined
}

export interface PeerSchedulerOptions {
  signal?: AbortSignal
  limits?: Partial<PeerSchedulerLimits>
  log?: Logger
  clock?: Clock
  /** Background work: no new batch starts while urgent chunks are being fetched. */
  yieldTo?: Urgency
  /** Urgent work: its requests go ahead of background ones waiting for a peer's stream. */
  urgent?: boolean
  /** Batches in flight to each peer, shared by the calls that run at once: work goes to the least loaded holder first. */
  load?: Map<string, number>
  /** How each chunk is checked against its digest (default verifyChunk; the simulator passes VerifiedArrays). */
  verify?: (expected: Uint8Array, bytes: Uint8Array) => VerifiedChunk
}

/** How long a yielding scheduler waits at most before it looks again. */
const YIELD_MS = 1000

/**
 * Fetches chunks from the peers that hold them: several batches in flight per peer, rarest chunks
 * first, every chunk verified on arrival. A peer that fails, stalls or lies gets no more work, and its
 * chunks go back to the queue for the other holders. Returns the wants that no live peer could
 * supply, for the origin.
 */
export async function fetchFromPeers (wants: Want[], peers: Array<{ source: PeerSource, have: Uint8Array }>, events: PeerSchedulerEvents, options: PeerSchedulerOptions = {}): Promise<Want[]> {
  const limits = { ...DEFAULT_PEER_LIMITS, ...options.limits }
  const clock = options.clock ?? realClock
  const verify = options.verify ?? verifyChunk
  const states: PeerState[] = peers.map(p => ({ ...p, inflight: 0, out: undefined }))
  const holds = (s: PeerState, w: Want): boolean => s.out === undefined && w.indices.some(i => hasBit(s.have, i))
  const holders = (w: Want): number => states.reduce((n, s) => n + (holds(s, w) ? 1 : 0), 0)

  // Wants that no live peer holds: they are returned for the origin.
  const orphans: Want[] = []
  // Rarest first; among equals, image order (a streaming reader wants the front early). Wants whose
  // holders are all gone move to the orphans.
  const rank = (ws: Want[]): Want[] => {
    const counts = new Map(ws.map(w => [w, holders(w)]))
    for (const w of ws) if (counts.get(w) === 0) orphans.push(w)
    return ws.filter(w => counts.get(w)! > 0).sort((a, b) => counts.get(a)! - counts.get(b)! || a.indices[0] - b.indices[0])
  }
  let queue = rank(wants)
  const running = new Set<Promise<void>>()

  // A batch takes at most an even share of what is queued among the live holders, so that a small
  // queue is spread over many peers instead of filling the first one's window.
  const takeBatch = (s: PeerState, most: number): Want[] => {
    const batch: Want[] = []
    let bytes = 0
    queue = queue.filter(w => {
      if (batch.length >= most || bytes >= limits.batchBytes || !holds(s, w)) return true
      batch.push(w)
      bytes += w.length
      return false
    })
    return batch
  }

  const requeue = (ws: Want[]): void => {
    queue = rank([...queue, ...ws])
  }

  const runBatch = async (s: PeerState, batch: Want[]): Promise<void> => {
    const controller = new AbortController()
    const onAbort = (): void => { controller.abort(options.signal?.reason) }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    let timer = clock.setTimer(() => { controller.abort(new Error('stalled')) }, limits.stallMs)
    const pending = new Map(batch.map(w => [w.key, w]))
    const got: VerifiedChunk[] = []
    const gotWants: Want[] = []
    try {
      for await (const reply of s.source.chunks(batch.map(w => w.digest), { signal: controller.signal, urgent: options.urgent })) {
        clock.clearTimer(timer)
        timer = clock.setTimer(() => { controller.abort(new Error('stalled')) }, limits.stallMs)
        const key = Buffer.from(reply.digest).toString('latin1')
        const want = pending.get(key)
        if (want == null) continue // an answer to something not asked: ignore
        if ('missing' in reply) {
          pending.delete(key)
          for (const i of want.indices) s.have[i >> 3] &= ~(0x80 >> (i & 7))
          requeue([want])
          continue
        }
        events.received(reply.bytes.length, s.source.id)
        const chunk = verify(want.digest, reply.bytes) // a bad chunk stays pending, for other holders
        got.push(chunk)
        gotWants.push(want)
        events.verified?.(chunk, want)
        pending.delete(key)
      }
    } catch (err) {
      options.signal?.throwIfAborted()
      if (s.out !== undefined) {
        // Out already (another of its batches failed first): told once.
      } else if (err instanceof ChunkCorruptError) {
        s.out = 'bad'
        events.badChunk(s.source.id)
        options.log?.warn('peer sent a corrupt chunk; dropped for this fetch', { peer: s.source.id })
      } else {
        s.out = 'dead'
        events.peerOut?.(s.source.id)
        options.log?.info('peer failed; its chunks go to other holders', { peer: s.source.id, err })
      }
    } finally {
      clock.clearTimer(timer)
      options.signal?.removeEventListener('abort', onAbort)
    }
    if (pending.size > 0) requeue([...pending.values()])
    // Chunks verified before any failure are good. A store failure here fails the whole fetch.
    if (got.length > 0) await events.deliver(got, gotWants, s.source.id)
  }

  const load = options.load ?? new Map<string, number>()
  const loadOf = (s: PeerState): number => load.get(s.source.id) ?? 0
  const fill = (): void => {
    if (options.yieldTo?.busy === true) return
    const live = states.filter(s => s.out === undefined).length
    const share = Math.max(1, Math.min(limits.batchChunks, Math.ceil(queue.length / Math.max(1, live))))
    // One batch at a time to the least loaded peer (across every call sharing `load`) that holds
    // something queued, until every window is full or nothing queued is held by a peer with room.
    const open = new Set(states.filter(s => s.out === undefined && s.inflight < limits.windowPerPeer))
    let total = 0
    for (const n of load.values()) total += n
    while (open.size > 0 && queue.length > 0 && total < limits.maxInflight) {
      let s: PeerState | undefined
      for (const c of open) if (s == null || loadOf(c) < loadOf(s)) s = c
      const batch = takeBatch(s!, share)
      if (batch.length === 0) { open.delete(s!); continue }
      const peer = s!
      peer.inflight++
      total++
      load.set(peer.source.id, loadOf(peer) + 1)
      if (peer.inflight >= limits.windowPerPeer) open.delete(peer)
      const p: Promise<void> = runBatch(peer, batch).finally(() => {
        peer.inflight--
        const left = loadOf(peer) - 1
        if (left > 0) load.set(peer.source.id, left)
        else load.delete(peer.source.id)
        running.delete(p)
      })
      running.add(p)
    }
  }

  fill()
  while (running.size > 0 || (options.yieldTo?.busy === true && queue.length > 0)) {
    if (running.size > 0) await Promise.race(running)
    else await options.yieldTo!.quiet(YIELD_MS, options.signal ?? new AbortController().signal, clock)
    options.signal?.throwIfAborted()
    fill()
  }
  // Whatever is still queued has holders only among peers that are out now.
  return [...orphans, ...queue]
}
