import * as dagCbor from '@ipld/dag-cbor'
import { ProtocolError } from '../errors.js'
import type { FrameProtocol } from '../peer/exchange.js'
import { PROTOCOL_PREFIX } from '../peer/protocols.js'
import { MAX_POLICIES, type ReplicaPolicy } from './replica-policies.js'

/*
 * `/imgswarm/policy/1.0.0`: anti-entropy of the replica policies. The requester sends its whole table
 * `{ policies: [{ image: <32 bytes>, min, ts, by }, …] }` in one frame; the responder adopts what is
 * newer, and answers with its own whole table in one frame, which the requester merges the same way.
 * One exchange thus brings both sides up to date. Entries are checked one by one on merge.
 */

export const POLICY: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/policy/1.0.0`,
  // MAX_POLICIES entries of ~200 bytes at most (a 32-byte digest, two integers, a peer ID).
  maxRequestFrameBytes: 256 * 1024,
  maxResponseFrameBytes: 256 * 1024
})

export function encodePolicies (policies: ReplicaPolicy[]): Uint8Array {
  if (policies.length > MAX_POLICIES) throw new RangeError(`${policies.length} policies exceed ${MAX_POLICIES}`)
  return dagCbor.encode({ policies: policies.map(p => ({ image: Buffer.from(p.image, 'hex'), min: p.min, ts: p.ts, by: p.by })) })
}

/**
 * The entries of a policy frame, with digests back in hex; each is still to be checked (`checkPolicy`).
 * @throws ProtocolError for a frame that is no map with a list of at most MAX_POLICIES entries
 */
export function decodePolicies (frame: Uint8Array): unknown[] {
  let o: unknown
  try {
    o = dagCbor.decode(frame)
  } catch (err) {
    throw new ProtocolError(`${POLICY.id}: a frame that is not valid dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  const list = (o as { policies?: unknown } | null)?.policies
  if (!Array.isArray(list) || list.length > MAX_POLICIES) throw new ProtocolError(`${POLICY.id}: a frame holds a list of at most ${MAX_POLICIES} policies`)
  return list.map(e => {
    const image = (e as { image?: unknown } | null)?.image
    return image instanceof Uint8Array && image.length === 32 ? { ...(e as object), image: Buffer.from(image).toString('hex') } : e
  })
}
