import { ProtocolError } from '../errors.js'
import type { FetchJob } from '../fetch/fetch-job.js'
import type { Fetcher } from '../fetch/fetcher.js'
import { handle, onlyFrame, request, type DialTarget } from '../peer/exchange.js'
import type { PeerLimits } from '../peer/peer-limits.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import { silentLogger, type Logger } from '../util/log.js'
import {
  PREHEAT, decodePreheatRequest, decodePreheatResponse, encodePreheatRequest, encodePreheatResponse,
  preheatRemoteError, progressOf, type ImageProgress
} from './preheat-protocol.js'

/** How often a responder reports progress: often enough for a live display, and far inside the frame timeout. */
export const PROGRESS_EVERY_MS = 500

/**
 * Preheat requests one node serves at once, from all peers together. Each may start up to 64 fetches;
 * past the limit a request is answered `busy` rather than queued, so a peer cannot make this node
 * pull an unbounded number of images at once.
 */
export const MAX_SERVED_PREHEATS = 4

/** Preheat streams one peer may have open to us at once. */
const MAX_PREHEATS_PER_PEER = 2

/**
 * Answers preheat requests: starts (or joins) a fetch of each image and streams its progress until
 * every fetch has ended or the requester hangs up.
 */
export async function servePreheat (node: AnyLibp2p, fetcher: Fetcher, options: { log?: Logger, maxServed?: number, member?: (peer: PeerId) => boolean, limits?: PeerLimits } = {}): Promise<void> {
  const log = options.log ?? silentLogger
  const limit = options.maxServed ?? MAX_SERVED_PREHEATS
  let serving = 0
  await handle(node, PREHEAT, async (frames, send, ctx) => {
    const refs = decodePreheatRequest(await onlyFrame(frames, PREHEAT))
    if (options.member != null && !options.member(ctx.peer)) {
      log.warn('preheat refused: the peer is not a member of this cluster', { peer: ctx.peer.toString(), images: refs.length })
      await send(encodePreheatResponse({ type: 'error', reason: 'forbidden', message: 'this node takes preheat requests only from its cluster (swarm key or allow-list)' }))
      return
    }
    if (serving >= limit) {
      await send(encodePreheatResponse({ type: 'error', reason: 'busy', message: `already serving ${serving} preheat requests; try again later` }))
      return
    }
    // A place is held until the fetches end, not the stream: a peer that asks and hangs up, again and
    // again, still cannot have more than `limit` preheats fetching here at once.
    serving++
    log.info('preheat asked by a peer', { peer: ctx.peer.toString(), images: refs })
    const jobs = refs.map(r => fetcher.start(r))
    void Promise.allSettled(jobs.map(async j => { await j.promise })).finally(() => { serving-- })
    const report = async (done: boolean): Promise<void> => {
      await send(encodePreheatResponse({ type: 'progress', images: jobs.map(j => progressOf(j.status)), done }))
    }
    while (!jobs.every(j => j.finished)) {
      await report(false)
      await untilSettledOr(jobs, PROGRESS_EVERY_MS, ctx.signal)
      // The requester hung up: stop reporting; the fetches go on (that is what was asked).
      if (ctx.signal.aborted) return
    }
    await report(true)
  }, {
    maxStreamsPerPeer: MAX_PREHEATS_PER_PEER,
    limits: options.limits,
    refusal: message => encodePreheatResponse({ type: 'error', reason: 'busy', message }),
    onError: (err, peer) => { log.debug('preheat exchange failed', { peer: peer.toString(), err }) }
  })
}

/**
 * Asks `peer` to preheat `refs`, calling `onProgress` with every progress frame; resolves with the
 * last one once the peer reports every fetch ended.
 * @throws RemoteError when the peer refuses (busy); ProtocolError, PeerUnreachableError,
 *   ProtocolUnsupportedError and the frame errors of `request`
 */
export async function askPreheat (node: AnyLibp2p, peer: DialTarget, refs: string[], onProgress: (images: ImageProgress[]) => void, options: { signal?: AbortSignal } = {}): Promise<ImageProgress[]> {
  for await (const frame of request(node, peer, PREHEAT, [encodePreheatRequest(refs)], options)) {
    const msg = decodePreheatResponse(frame, refs.length)
    if (msg.type === 'error') throw preheatRemoteError(msg)
    onProgress(msg.images)
    if (msg.done) {
      if (!msg.images.every(i => i.state === 'available' || i.state === 'failed')) throw new ProtocolError(`${PREHEAT.id}: the peer said done with fetches still running`)
      return msg.images
    }
  }
  throw new ProtocolError(`${PREHEAT.id}: the peer closed the stream before every fetch ended`)
}

/** Waits until every job has ended, `ms` have passed, or `signal` aborts, whichever is first. */
async function untilSettledOr (jobs: FetchJob[], ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const timer = setTimeout(finish, ms)
    const all = Promise.allSettled(jobs.map(async j => { await j.promise }))
    void all.then(finish)
    signal.addEventListener('abort', finish, { once: true })
    function finish (): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', finish)
      resolve()
    }
  })
}
