import * as dagCbor from '@ipld/dag-cbor'
import { ProtocolError } from '../errors.js'
import { Bitfield } from '../peer/bitfield.js'
import { handle, onlyFrame, request, type FrameProtocol } from '../peer/exchange.js'
import { PROTOCOL_PREFIX } from '../peer/protocols.js'
import type { PeerLimits } from '../peer/peer-limits.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { MAX_POLICIES } from './replica-policies.js'
import { withDeadline } from '../util/deadline.js'

/*
 * `/imgswarm/holds/1.0.0`: "which of these images do you hold?". A DHT provider record says a node
 * held or started to fetch an image at some time; it outlives a removal, and a failed fetch. The
 * repair loop asks the live providers to confirm before it counts them. The requester sends
 * `{ images: <n × 32 bytes> }` (1 to MAX_POLICIES digests); the responder answers `{ held: <bitfield> }`,
 * bit i set when it has image i `available` or is fetching it.
 */

export const HOLDS: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/holds/1.0.0`,
  maxRequestFrameBytes: MAX_POLICIES * 32 + 64,
  maxResponseFrameBytes: Bitfield.byteLength(MAX_POLICIES) + 64
})

/** How long one holds question may take. */
const ASK_TIMEOUT_MS = 5_000

export function encodeHoldsRequest (hexes: string[]): Uint8Array {
  if (hexes.length < 1 || hexes.length > MAX_POLICIES) throw new RangeError(`a holds request names 1 to ${MAX_POLICIES} images`)
  return dagCbor.encode({ images: Buffer.concat(hexes.map(h => Buffer.from(h, 'hex'))) })
}

/** @throws ProtocolError unless the frame packs 1 to MAX_POLICIES 32-byte digests */
export function decodeHoldsRequest (frame: Uint8Array): string[] {
  const packed = decodeMap(frame).images
  if (!(packed instanceof Uint8Array) || packed.length === 0 || packed.length % 32 !== 0 || packed.length / 32 > MAX_POLICIES) {
    throw new ProtocolError(`${HOLDS.id}: images must be 1 to ${MAX_POLICIES} digests of 32 bytes`)
  }
  const out: string[] = []
  for (let off = 0; off < packed.length; off += 32) out.push(Buffer.from(packed.subarray(off, off + 32)).toString('hex'))
  return out
}

/** @throws ProtocolError unless the answer is a bitfield of exactly `n` bits */
export function decodeHoldsResponse (frame: Uint8Array, n: number): boolean[] {
  const held = decodeMap(frame).held
  if (!(held instanceof Uint8Array) || held.length !== Bitfield.byteLength(n)) throw new ProtocolError(`${HOLDS.id}: the answer is a bitfield of ${n} bits`)
  const bits = new Bitfield(n, held)
  if (!bits.hasCleanTail()) throw new ProtocolError(`${HOLDS.id}: bits set past the last image`)
  return Array.from({ length: n }, (_, i) => bits.has(i))
}

/** Answers holds questions from the store's image records. */
export async function serveHolds (node: AnyLibp2p, store: LevelStore, log: Logger = silentLogger, limits?: PeerLimits): Promise<void> {
  await handle(node, HOLDS, async (frames, send) => {
    const hexes = decodeHoldsRequest(await onlyFrame(frames, HOLDS))
    const present = await Promise.all(hexes.map(async h => {
      const state = (await store.getRecord(h))?.state
      return state === 'available' || state === 'fetching'
    }))
    await send(dagCbor.encode({ held: Bitfield.from(present).bytes }))
  }, { maxStreamsPerPeer: 2, limits, onError: (err, peer) => { log.debug('holds exchange failed', { peer: peer.toString(), err }) } })
}

/** Which of `hexes` the peer holds (or is fetching), as it says. */
export async function askHolds (node: AnyLibp2p, peer: PeerId, hexes: string[]): Promise<boolean[]> {
  const answer = await withDeadline(ASK_TIMEOUT_MS, undefined, async signal => {
    let only: Uint8Array | undefined
    for await (const frame of request(node, peer, HOLDS, [encodeHoldsRequest(hexes)], { signal })) {
      if (only != null) throw new ProtocolError(`${HOLDS.id}: more than one frame in the answer`)
      only = frame
    }
    return only
  })
  if (answer == null) throw new ProtocolError(`${HOLDS.id}: the answer ended without a frame`)
  return decodeHoldsResponse(answer, hexes.length)
}

function decodeMap (frame: Uint8Array): Record<string, unknown> {
  let o: unknown
  try {
    o = dagCbor.decode(frame)
  } catch (err) {
    throw new ProtocolError(`${HOLDS.id}: a frame that is not valid dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  if (o == null || typeof o !== 'object' || Array.isArray(o) || o instanceof Uint8Array) throw new ProtocolError(`${HOLDS.id}: a frame that is not a map`)
  return o as Record<string, unknown>
}
