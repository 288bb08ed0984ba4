import * as dagCbor from '@ipld/dag-cbor'
import { parseRef } from '../chunks/ref.js'
import { ProtocolError, RemoteError } from '../errors.js'
import type { FetchSource, FetchState, FetchStatus } from '../fetch/fetch-job.js'
import type { FrameProtocol } from '../peer/exchange.js'
import { MAX_ERROR_MESSAGE_BYTES, PROTOCOL_PREFIX, type ErrorReason } from '../peer/protocols.js'
import { describe } from '../util/format.js'

/*
 * `/imgswarm/preheat/1.0.0`: "fetch these images, and tell me how it goes".
 *
 * The requester sends one dag-cbor frame `{ refs: [REF, …] }` (1 to MAX_PREHEAT_REFS full refs:
 * `sha256:<hex>` or a manifest CID; a prefix means nothing on another node) and closes its side. The
 * responder starts a fetch of each through its own Fetcher (neighbours first, origin last) and
 * answers with progress frames `{ images: [ImageProgress, …], done }`, one entry per ref in request
 * order, until every fetch has ended (`done: true`, the last frame), or with one error frame
 * `{ error: { reason, message } }`. Fetches started keep running when the requester goes away: the
 * point of a preheat is that the image ends up on the node.
 */

/** Most refs in one preheat request: the same bound as a fetch set (`POST /v1/fetch`). */
export const MAX_PREHEAT_REFS = 64

/** Longest ref text accepted: a manifest CID in base32 is 59 characters, `sha256:<hex>` 71. */
export const MAX_REF_CHARS = 128

export const PREHEAT: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/preheat/1.0.0`,
  // 64 refs of at most 128 characters, with CBOR overhead.
  maxRequestFrameBytes: 16 * 1024,
  // 64 entries of a state, a few numbers, an image ref and an error cut to 512 bytes.
  maxResponseFrameBytes: 64 * 1024
})

const STATES: readonly FetchState[] = ['resolving', 'fetching', 'verifying', 'available', 'failed']
const SOURCES: readonly FetchSource[] = ['local', 'peer', 'origin']

/** How one image's fetch on one node is going. */
export interface ImageProgress {
  ref: string
  /** `sha256:<hex>` once known. */
  image?: string
  state: FetchState
  size?: number
  /** Bytes obtained so far, by source (`local`: already stored). */
  bytes: Record<FetchSource, number>
  error?: string
}

export type PreheatResponse =
  | { type: 'progress', images: ImageProgress[], done: boolean }
  | { type: 'error', reason: ErrorReason, message: string }

/** The progress entry of a fetch job's status. */
export function progressOf (s: FetchStatus): ImageProgress {
  return {
    ref: s.ref,
    ...(s.image != null ? { image: s.image } : {}),
    state: s.state,
    ...(s.size != null ? { size: s.size } : {}),
    bytes: { ...s.bytes },
    ...(s.error != null ? { error: cut(s.error) } : {})
  }
}

/**
 * Checks a list of refs to preheat: 1 to {@link MAX_PREHEAT_REFS} full refs (never prefixes).
 * @throws ProtocolError naming the first bad ref
 */
export function checkPreheatRefs (refs: unknown): string[] {
  if (!Array.isArray(refs) || refs.length < 1 || refs.length > MAX_PREHEAT_REFS) throw new ProtocolError(`${PREHEAT.id}: a request names 1 to ${MAX_PREHEAT_REFS} refs`)
  return refs.map(r => {
    if (typeof r !== 'string' || r.length > MAX_REF_CHARS) throw new ProtocolError(`${PREHEAT.id}: a ref is a string of at most ${MAX_REF_CHARS} characters`)
    let kind: string
    try {
      kind = parseRef(r).kind
    } catch (err) {
      throw new ProtocolError(`${PREHEAT.id}: ${(err as Error).message}`)
    }
    if (kind === 'prefix') throw new ProtocolError(`${PREHEAT.id}: "${r}" is a prefix; a peer needs a full sha256 or a manifest CID`)
    return r
  })
}

export function encodePreheatRequest (refs: string[]): Uint8Array {
  return dagCbor.encode({ refs: checkPreheatRefs(refs) })
}

export function decodePreheatRequest (frame: Uint8Array): string[] {
  return checkPreheatRefs(decodeMap(frame).refs)
}

export function encodePreheatResponse (msg: PreheatResponse): Uint8Array {
  if (msg.type === 'error') return dagCbor.encode({ error: { reason: msg.reason, message: cut(msg.message) } })
  return dagCbor.encode({ images: msg.images.map(stripUndefined), done: msg.done })
}

/** @throws ProtocolError for anything but a well-formed progress or error frame within the bounds */
export function decodePreheatResponse (frame: Uint8Array, expected: number): PreheatResponse {
  const o = decodeMap(frame)
  if (o.error !== undefined) {
    const e = o.error as Record<string, unknown>
    if (e == null || typeof e !== 'object' || typeof e.message !== 'string') throw new ProtocolError(`${PREHEAT.id}: a malformed error frame`)
    const reason: ErrorReason = e.reason === 'busy' || e.reason === 'bad-request' || e.reason === 'forbidden' ? e.reason : 'internal'
    return { type: 'error', reason, message: cut(e.message) }
  }
  if (!Array.isArray(o.images) || o.images.length !== expected || typeof o.done !== 'boolean') {
    throw new ProtocolError(`${PREHEAT.id}: a progress frame has one entry per ref asked (${expected}) and a done flag`)
  }
  return { type: 'progress', images: o.images.map(checkProgress), done: o.done }
}

/** The RemoteError an error frame stands for. */
export function preheatRemoteError (msg: { reason: ErrorReason, message: string }): RemoteError {
  return new RemoteError(`${PREHEAT.id}: the peer answered ${msg.reason}: ${msg.message}`, msg.reason)
}

function checkProgress (v: unknown): ImageProgress {
  const bad = (what: string): never => { throw new ProtocolError(`${PREHEAT.id}: a progress entry with ${what}`) }
  if (v == null || typeof v !== 'object' || Array.isArray(v)) return bad('no map')
  const o = v as Record<string, unknown>
  if (typeof o.ref !== 'string' || o.ref.length > MAX_REF_CHARS) bad('a bad ref')
  if (!STATES.includes(o.state as FetchState)) bad(`an unknown state ${describe(o.state)}`)
  if (o.image !== undefined && (typeof o.image !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(o.image))) bad('a bad image digest')
  if (o.size !== undefined && !isCount(o.size)) bad('a bad size')
  if (o.error !== undefined && typeof o.error !== 'string') bad('a bad error')
  const b = o.bytes as Record<string, unknown> | undefined
  if (b == null || typeof b !== 'object' || !SOURCES.every(s => isCount(b[s]))) bad('bad byte counts')
  return {
    ref: o.ref as string,
    ...(o.image !== undefined ? { image: o.image as string } : {}),
    state: o.state as FetchState,
    ...(o.size !== undefined ? { size: o.size as number } : {}),
    bytes: { local: b!.local as number, peer: b!.peer as number, origin: b!.origin as number },
    ...(o.error !== undefined ? { error: cut(o.error as string) } : {})
  }
}

function isCount (v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function decodeMap (frame: Uint8Array): Record<string, unknown> {
  let o: unknown
  try {
    o = dagCbor.decode(frame)
  } catch (err) {
    throw new ProtocolError(`${PREHEAT.id}: a frame that is not valid dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  if (o == null || typeof o !== 'object' || Array.isArray(o) || o instanceof Uint8Array) throw new ProtocolError(`${PREHEAT.id}: a frame that is not a map`)
  return o as Record<string, unknown>
}

/** dag-cbor refuses `undefined`; optional fields are left out instead. */
function stripUndefined<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

/** An error text cut to {@link MAX_ERROR_MESSAGE_BYTES} bytes of UTF-8 (about: the cut may split a character). */
function cut (text: string): string {
  const bytes = Buffer.from(text, 'utf8')
  return bytes.length <= MAX_ERROR_MESSAGE_BYTES ? text : bytes.subarray(0, MAX_ERROR_MESSAGE_BYTES).toString('utf8')
}
