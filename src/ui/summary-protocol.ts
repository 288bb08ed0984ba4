import { ProtocolError } from '../errors.js'
import { handle, onlyFrame, request, type FrameProtocol } from '../peer/exchange.js'
import type { PeerLimits } from '../peer/peer-limits.js'
import { PROTOCOL_PREFIX } from '../peer/protocols.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import { withDeadline } from '../util/deadline.js'
import { silentLogger, type Logger } from '../util/log.js'
import { checkSummary, type NodeSummary } from './node-summary.js'

/*
 * `/imgswarm/node-summary/1.0.0`: "how are you?", for the cluster page. The requester sends one
 * frame, `{"v":1}` (JSON); the responder answers with one frame, its NodeSummary as JSON. Only
 * cluster members are answered (the same rule as preheat requests); others get the stream reset.
 */
export const NODE_SUMMARY: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/node-summary/1.0.0`,
  maxRequestFrameBytes: 64,
  maxResponseFrameBytes: 96 * 1024
})

/** How long one summary question may take. */
const ASK_TIMEOUT_MS = 3_000

const REQUEST = new TextEncoder().encode('{"v":1}')

export interface ServeSummaryOptions {
  /** Whether a peer belongs to the cluster: only members are answered. */
  member: (peer: PeerId) => boolean
  log?: Logger
  limits?: PeerLimits
}

/** Answers summary questions from members with `summary()`. */
export async function serveSummary (node: AnyLibp2p, summary: () => Promise<NodeSummary>, options: ServeSummaryOptions): Promise<void> {
  const log = options.log ?? silentLogger
  await handle(node, NODE_SUMMARY, async (frames, send, context) => {
    const frame = await onlyFrame(frames, NODE_SUMMARY)
    if (!options.member(context.peer)) throw new ProtocolError(`${NODE_SUMMARY.id}: ${context.peer.toString()} is not a member of the cluster`)
    let asked: unknown
    try {
      asked = JSON.parse(new TextDecoder().decode(frame))
    } catch {
      throw new ProtocolError(`${NODE_SUMMARY.id}: the request is not JSON`)
    }
    if ((asked as { v?: unknown })?.v !== 1) throw new ProtocolError(`${NODE_SUMMARY.id}: unknown request version`)
    await send(new TextEncoder().encode(JSON.stringify(await summary())))
  }, { maxStreamsPerPeer: 2, limits: options.limits, onError: (err, peer) => { log.debug('node summary exchange failed', { peer: peer.toString(), err }) } })
}

/** A peer's summary, checked and bounded. */
export async function askSummary (node: AnyLibp2p, peer: PeerId, options: { signal?: AbortSignal } = {}): Promise<NodeSummary> {
  const answer = await withDeadline(ASK_TIMEOUT_MS, options.signal, async signal => {
    let only: Uint8Array | undefined
    for await (const frame of request(node, peer, NODE_SUMMARY, [REQUEST], { signal, timeoutMs: ASK_TIMEOUT_MS })) {
      if (only != null) throw new ProtocolError(`${NODE_SUMMARY.id}: more than one frame in the answer`)
      only = frame
    }
    return only
  })
  if (answer == null) throw new ProtocolError(`${NODE_SUMMARY.id}: the answer ended without a frame`)
  return decodeSummary(answer, peer.toString())
}

/**
 * A peer's summary frame, checked and bounded; `peerId` is the connection's.
 * @throws ProtocolError for a frame that is not JSON or not a summary
 */
export function decodeSummary (frame: Uint8Array, peerId: string): NodeSummary {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder().decode(frame))
  } catch {
    throw new ProtocolError(`${NODE_SUMMARY.id}: the answer is not JSON`)
  }
  try {
    return checkSummary(value, peerId)
  } catch (err) {
    throw new ProtocolError(`${NODE_SUMMARY.id}: ${(err as Error).message}`)
  }
}
