import { CID } from 'multiformats/cid'
import { ProtocolError } from '../errors.js'
import { CLAIMS_SPACING_MS, NEWS_SPACING_MS, claimsKey, nextBeat } from '../fetch/candidates.js'
import type { HaveFeed, HaveFeeds } from '../fetch/have-feeds.js'
import type { PeerSource } from '../fetch/sources.js'
import type { AbortOptions } from '../store/chunk-store.js'
import { TokenBucket } from '../util/token-bucket.js'
import { Bitfield } from './bitfield.js'
import { handle, request, type HandleOptions } from './exchange.js'
import {
  HAVE_UPDATES, decodeHaveResponse, decodeHaveUpdate, decodeHaveUpdatesRequest, encodeHaveResponse, encodeHaveUpdate,
  encodeHaveUpdatesRequest, indexRuns, remoteError, type HaveResponse
} from './protocols.js'
import type { AnyLibp2p, PeerId } from './types.js'

/*
 * The have-updates protocol (see protocols.ts, HAVE_UPDATES): both ends of one stream push the chunks
 * they gain, so nodes fetching an image together learn of each other's new chunks within ~100 ms
 * without a request per peer per poll. Every bound is set here, on the receiving side too.
 */

/** Updates from one side are gathered for this long into one frame: at most 10 frames a second per stream. */
export const UPDATE_SPACING_MS = 100
/** An idle side sends an empty update this often, so the other's frame timeout tells a live peer from a dead one. */
export const KEEPALIVE_MS = 10_000
/** No frame (not even a keep-alive) for this long: the peer is gone, the stream is reset. */
export const WATCH_TIMEOUT_MS = 3 * KEEPALIVE_MS
/** Frames a second one side may send, sustained, and in a burst: above the honest 20 (10 of updates, 10 of candidates), far below a flood. */
const FRAMES_PER_SECOND = 30
const FRAME_BURST = 50
/** Streams one peer may hold open to us: one per image it fetches together with us. */
export const MAX_WATCH_STREAMS_PER_PEER = 8
/** Neighbours pushed to for one image: more get the bitfield once (as `have` would give) and are closed. */
export const MAX_WATCHERS_PER_IMAGE = 64

/** A source of this node's updates for one stream: subscribed at once, so nothing between the bitfield and the first update is lost. */
interface UpdateQueue {
  frames: AsyncIterable<Uint8Array>
  /** From now on the frames carry this node's candidates too (the other side takes them). */
  sendCandidates: () => void
  /** Stops the frames (they end without "complete"). */
  close: () => void
}

function updateQueue (feed: HaveFeed, signal?: AbortSignal): UpdateQueue {
  let pending: number[] = []
  let ended = feed.outcome !== undefined
  let closed = false
  let candidates = false
  // When this node's candidates are due next (never while nothing changed), and what was sent last.
  let claimsDue = Infinity
  let claimsSentAt = -Infinity
  let claimsSent = ''
  let lastFrameAt = Date.now()
  let wake: (() => void) | undefined
  const poke = (): void => { const w = wake; wake = undefined; w?.() }
  const claimsIn = (ms: number): void => {
    if (!candidates) return
    const due = Math.max(Date.now() + ms, claimsSentAt + NEWS_SPACING_MS)
    if (due < claimsDue) { claimsDue = due; poke() }
  }
  // Only what must go out sooner than the loop's wait wakes it: news of candidates moves claimsDue
  // (claimsIn pokes then), a neighbour's rising count usually does not.
  const unsubscribe = feed.subscribe(x => {
    if (x === 'candidates') claimsIn(NEWS_SPACING_MS)
    else if (x === 'claims') claimsIn(nextBeat(Date.now(), CLAIMS_SPACING_MS))
    else {
      if (x === 'end') ended = true
      else for (const i of x) pending.push(i)
      claimsIn(nextBeat(Date.now(), CLAIMS_SPACING_MS))
      poke()
    }
  })
  const close = (): void => { closed = true; poke() }
  signal?.addEventListener('abort', close, { once: true })
  const pause = async (ms: number): Promise<void> => {
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { wake = undefined; resolve() }, ms)
      wake = () => { clearTimeout(timer); resolve() }
    })
  }
  const claimsFrame = (): Uint8Array | undefined => {
    claimsDue = Infinity
    claimsSentAt = Date.now()
    const claims = feed.claims()
    const key = claimsKey(claims)
    if (key === claimsSent) return undefined
    claimsSent = key
    return encodeHaveUpdate({ type: 'candidates', candidates: claims })
  }
  async function * frames (): AsyncGenerator<Uint8Array> {
    try {
      while (!closed) {
        const now = Date.now()
        if (pending.length === 0 && !ended && claimsDue > now && now - lastFrameAt < KEEPALIVE_MS) {
          await pause(Math.min(claimsDue, lastFrameAt + KEEPALIVE_MS) - now)
          continue
        }
        if (claimsDue <= now) {
          const frame = claimsFrame()
          if (frame != null) { lastFrameAt = now; yield frame }
        }
        if (pending.length > 0) {
          const indices = pending
          pending = []
          lastFrameAt = now
          for (const runs of indexRuns(indices)) yield encodeHaveUpdate({ type: 'update', runs })
        } else if (!ended && now - lastFrameAt >= KEEPALIVE_MS) {
          lastFrameAt = now
          yield encodeHaveUpdate({ type: 'update', runs: [] }) // keep-alive
          continue
        }
        if (ended && pending.length === 0) {
          if (feed.outcome === true) yield encodeHaveUpdate({ type: 'complete' })
          return
        }
        // Gather what arrives meanwhile into the next frame; "end" cuts the wait short.
        const until = Date.now() + UPDATE_SPACING_MS
        while (!closed && !ended && Date.now() < until) await pause(until - Date.now())
      }
    } finally {
      unsubscribe()
      signal?.removeEventListener('abort', close)
    }
  }
  const sendCandidates = (): void => {
    if (candidates) return
    candidates = true
    claimsIn(0)
  }
  return { frames: frames(), sendCandidates, close }
}

/** A peer's frame rate, checked on arrival. */
function frameRate (label: string): () => void {
  const bucket = new TokenBucket(FRAMES_PER_SECOND, FRAME_BURST)
  return () => {
    if (!bucket.tryTake(1)) throw new ProtocolError(`${label}: the peer sends have-updates faster than ${FRAMES_PER_SECOND} frames a second`)
  }
}

/**
 * A bitfield a peer sent for an image of `chunkCount` chunks, checked.
 * @throws ProtocolError for a wrong length or bits set past the last chunk
 */
export function peerBits (bytes: Uint8Array, chunkCount: number): Uint8Array {
  if (bytes.length !== Bitfield.byteLength(chunkCount)) throw new ProtocolError(`${HAVE_UPDATES.id}: a bitfield of ${chunkCount} chunks has ${Bitfield.byteLength(chunkCount)} bytes, not ${bytes.length}`)
  if (!new Bitfield(chunkCount, bytes).hasCleanTail()) throw new ProtocolError(`${HAVE_UPDATES.id}: bits set past the last chunk`)
  return bytes
}

/**
 * Watches a peer's chunks of the image `feed` is fetching, over one have-updates stream: this node's
 * bitfield and updates go one way, the peer's the other, into `feed`. Resolves when the stream ends
 * (false if the peer does not know the image). See {@link PeerSource.watchHave}.
 */
export async function watchHave (node: AnyLibp2p, peer: PeerId, source: PeerSource, feed: HaveFeed, options: AbortOptions = {}): Promise<boolean> {
  const updates = updateQueue(feed, options.signal)
  const first = encodeHaveUpdatesRequest({ manifest: CID.parse(feed.manifestCid), have: Uint8Array.from(feed.bits), fetching: feed.outcome === undefined, candidates: true })
  async function * out (): AsyncGenerator<Uint8Array> {
    yield first
    yield * updates.frames
  }
  const checkRate = frameRate(`${HAVE_UPDATES.id} with ${source.id}`)
  let frames = 0
  let known = false
  try {
    for await (const frame of request(node, peer, HAVE_UPDATES, out(), { signal: options.signal, timeoutMs: WATCH_TIMEOUT_MS })) {
      checkRate()
      if (frames++ === 0) {
        const answer = decodeHaveResponse(frame)
        if (answer.type === 'error') throw remoteError(answer, HAVE_UPDATES)
        if (answer.type === 'not-found') { updates.close(); continue }
        if (answer.bitfield.size !== feed.chunkCount) throw new ProtocolError(`${HAVE_UPDATES.id}: ${source.id} answered for ${answer.bitfield.size} chunks, the manifest has ${feed.chunkCount}`)
        known = true
        feed.setPeer(source, answer.bitfield.bytes, answer.fetching === true)
        // A peer not fetching sends its bitfield once and closes: stop our side too.
        if (answer.fetching !== true) updates.close()
        continue
      }
      const update = decodeHaveUpdate(frame, feed.chunkCount)
      if (update.type === 'complete') {
        feed.peerComplete(source.id)
        updates.close()
      } else if (update.type === 'candidates') {
        // It takes candidates too (it sends them only to a requester that said it takes them).
        updates.sendCandidates()
        feed.hearClaims(update.candidates)
      } else {
        feed.gained(source.id, update.runs)
      }
    }
    return known
  } finally {
    updates.close()
    if (known) feed.peerGone(source.id, feed.peers.get(source.id)?.source)
  }
}

export interface HaveUpdatesServeOptions {
  feeds: Pick<HaveFeeds, 'get'>
  /** The answer `have` gives for an image this node is not fetching now (or not-found). */
  snapshot: (manifest: CID) => Promise<HaveResponse>
  /** A source for a requesting peer, to fetch from it what its updates say it holds. */
  sourceFor: (peer: PeerId) => PeerSource
  guard: HandleOptions
}

/**
 * Answers have-updates streams: for an image this node is fetching, its bitfield and then its updates,
 * taking the requester's in return (the requester becomes one of the fetch's peers); for any other
 * image, the bitfield once and the end, as `have` would answer.
 */
export async function serveHaveUpdates (node: AnyLibp2p, o: HaveUpdatesServeOptions): Promise<void> {
  await handle(node, HAVE_UPDATES, async (frames, send, ctx) => {
    const it = frames[Symbol.asyncIterator]()
    const head = await it.next()
    if (head.done === true) throw new ProtocolError(`${HAVE_UPDATES.id}: the requester closed without a request`)
    const req = decodeHaveUpdatesRequest(head.value)
    const feed = o.feeds.get(req.manifest.toString())
    if (feed == null || feed.outcome !== undefined || feed.peers.size >= MAX_WATCHERS_PER_IMAGE) {
      const answer = await o.snapshot(req.manifest)
      await send(encodeHaveResponse(answer.type === 'have' ? { ...answer, fetching: false } : answer))
      return
    }
    const updates = updateQueue(feed, ctx.signal)
    await send(encodeHaveResponse({ type: 'have', bitfield: new Bitfield(feed.chunkCount, Uint8Array.from(feed.bits)), fetching: true }))
    if (req.candidates === true) updates.sendCandidates()
    const source = req.have != null ? o.sourceFor(ctx.peer) : undefined
    if (source != null) feed.setPeer(source, peerBits(req.have!, feed.chunkCount), req.fetching)
    const checkRate = frameRate(`${HAVE_UPDATES.id} from ${ctx.peer.toString()}`)
    // The requester's updates, until it closes (its fetch ended, or it has all it needs from us).
    const reading = (async () => {
      while (true) {
        const next = await it.next()
        if (next.done === true) return
        checkRate()
        const update = decodeHaveUpdate(next.value, feed.chunkCount)
        if (source == null) continue
        if (update.type === 'complete') feed.peerComplete(source.id)
        else if (update.type === 'candidates') feed.hearClaims(update.candidates)
        else feed.gained(source.id, update.runs)
      }
    })().finally(() => { updates.close() })
    reading.catch(() => {}) // awaited below, or ended by the reset that a throw here causes
    try {
      for await (const frame of updates.frames) await send(frame)
      // Our fetch failed: there is nothing more to say, and no "complete" to say it with.
      if (feed.outcome === false) throw new ProtocolError(`${HAVE_UPDATES.id}: the fetch here failed`)
      await reading
    } finally {
      updates.close()
      if (source != null) feed.peerGone(source.id, source)
    }
  }, { ...o.guard, maxStreamsPerPeer: MAX_WATCH_STREAMS_PER_PEER, timeoutMs: WATCH_TIMEOUT_MS })
}
