import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { MAX_CHUNK_SIZE } from '../chunks/fastcdc.js'
import { MAX_MANIFEST_BYTES } from '../chunks/manifest.js'
import { MAX_CLAIMS } from '../fetch/candidates.js'
import { ProtocolError, RemoteError } from '../errors.js'
import { describe } from '../util/format.js'
import { Bitfield } from './bitfield.js'
import type { FrameProtocol } from './exchange.js'
import { encodeVarint } from './frames.js'

/*
 * The imgswarm wire protocols: ids, message shapes, encoders, decoders and their validation.
 *
 * Every exchange is one stream: the requester sends exactly one request frame and closes its side;
 * the responder answers with frames and closes (see exchange.ts). Requests are small dag-cbor maps:
 * self-describing, extensible with optional fields (unknown fields are ignored), and CIDs are native.
 * Responses start with a one-byte kind followed by a binary body, so chunk bytes are never copied
 * through a CBOR codec. Each answer carries what the requester needs to tell complete from cut off:
 * a total size (manifest), a count (have), or one frame per requested chunk (chunks).
 *
 * Nothing here hashes: whatever a peer sends is verified by the fetcher, in one place.
 */

/** The shared prefix; a breaking change to a protocol bumps its major version. */
export const PROTOCOL_PREFIX = '/imgswarm'

/**
 * The largest request frame. The largest request is a chunk batch: {@link MAX_CHUNK_BATCH} × 32
 * bytes = 8 KiB of digests plus a few bytes of CBOR; 16 KiB leaves room for optional fields.
 */
export const MAX_REQUEST_FRAME_BYTES = 16 * 1024

/**
 * Most chunks in one `chunks` request. At the 64 KiB default chunk size a full batch is ~16 MiB:
 * one yamux window, ~25 ms of one stream at full speed, which amortises opening the stream (one
 * round trip) while keeping a slow peer's unfinished batch small enough to hand to another peer.
 */
export const MAX_CHUNK_BATCH = 256

/**
 * Manifests (up to {@link MAX_MANIFEST_BYTES}, 64 MiB) travel in pieces of this size, so that
 * neither side ever buffers more than a piece per frame; a typical 10 GiB image's ~6 MB manifest is
 * six frames.
 */
export const MANIFEST_PIECE_BYTES = 1024 * 1024

/** Most chunks a valid manifest can list: 36 bytes each (digest and length) within its size limit. */
export const MAX_MANIFEST_CHUNKS = Math.floor(MAX_MANIFEST_BYTES / 36)

/** Error messages on the wire are cut to this many bytes of UTF-8: enough to say why, not a dump. */
export const MAX_ERROR_MESSAGE_BYTES = 512

/** `manifest`: by image digest or manifest CID → the manifest's dag-cbor bytes in pieces. */
export const MANIFEST: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/manifest/1.0.0`,
  maxRequestFrameBytes: MAX_REQUEST_FRAME_BYTES,
  // A kind byte and a piece.
  maxResponseFrameBytes: 1 + MANIFEST_PIECE_BYTES
})

/** `have`: by manifest CID → a bitfield of the manifest's chunk indices that the peer holds. */
export const HAVE: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/have/1.0.0`,
  maxRequestFrameBytes: MAX_REQUEST_FRAME_BYTES,
  // A kind byte, the chunk count as a varint, and one bit per chunk of the largest manifest (~228 KiB).
  maxResponseFrameBytes: 1 + encodeVarint(MAX_MANIFEST_CHUNKS).length + Bitfield.byteLength(MAX_MANIFEST_CHUNKS)
})

/** `chunks`: a batch of chunk digests → one frame per digest, in order: the chunk, or "missing". */
export const CHUNKS: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/chunks/1.0.0`,
  maxRequestFrameBytes: MAX_REQUEST_FRAME_BYTES,
  // A kind byte and the largest chunk any manifest may declare.
  maxResponseFrameBytes: 1 + MAX_CHUNK_SIZE
})

/** Most runs of chunk indices in one have-update frame; a sender splits larger updates. */
export const MAX_UPDATE_RUNS = 1024

/**
 * `have-updates`: one long-lived stream per pair of nodes fetching the same image. The requester's
 * first frame names the manifest and carries its own bitfield; each side then sends its bitfield once
 * (the responder in its first answer frame) and after it only the chunks it newly holds, as runs of
 * indices, until it holds them all ('complete') or the requester closes. Replaces polling `have`,
 * which stays for nodes of the previous release.
 */
export const HAVE_UPDATES: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/have-updates/1.0.0`,
  // The request map: a manifest CID, a flag and a bitfield as large as `have`'s answer.
  maxRequestFrameBytes: HAVE.maxResponseFrameBytes + 256,
  // The first answer is a `have` frame; updates are far smaller (at most MAX_UPDATE_RUNS runs).
  maxResponseFrameBytes: HAVE.maxResponseFrameBytes
})

/** Every imgswarm protocol, for registering handlers and for tests. */
export const PROTOCOLS: readonly FrameProtocol[] = Object.freeze([MANIFEST, HAVE, CHUNKS, HAVE_UPDATES])

/** Response kinds. Distinct across protocols, so a frame sent on the wrong protocol is caught. */
const KIND = {
  manifestHeader: 0x01,
  manifestPiece: 0x02,
  notFound: 0x03,
  have: 0x04,
  /** The same answer from a node that is fetching the image now (it will hold more soon). */
  haveFetching: 0x07,
  chunk: 0x05,
  missing: 0x06,
  /** have-updates: runs of chunk indices newly held (none: a keep-alive). */
  update: 0x08,
  /** have-updates: the sender holds every chunk now; its last frame. */
  complete: 0x09,
  /** have-updates: the best origin-read candidates the sender knows (see fetch/candidates.ts). */
  candidates: 0x0a,
  error: 0xff
} as const

/**
 * Why a responder refused: too loaded now or the requester over its rate (try another peer), failed
 * itself, could not understand the request, or does not take this request from a peer outside its cluster.
 */
export type ErrorReason = 'busy' | 'internal' | 'bad-request' | 'forbidden'
const REASON_CODES: Record<ErrorReason, number> = { busy: 1, internal: 2, 'bad-request': 3, forbidden: 4 }
const REASONS = new Map<number, ErrorReason>(Object.entries(REASON_CODES).map(([k, v]) => [v, k as ErrorReason]))

/** An error answer, valid on every protocol; it is the last frame of its exchange. */
export interface ErrorResponse { type: 'error', reason: ErrorReason, message: string }

/** "I do not have that manifest", on `manifest` and `have`; the only frame of its exchange. */
export interface NotFoundResponse { type: 'not-found' }

// ---------------------------------------------------------------------------------------------
// manifest

export type ManifestRequest = { digest: Uint8Array } | { cid: CID }

export type ManifestResponse =
  | { type: 'header', size: number }
  | { type: 'piece', bytes: Uint8Array }
  | NotFoundResponse
  | ErrorResponse

export function encodeManifestRequest (req: ManifestRequest): Uint8Array {
  if ('digest' in req) {
    checkDigest(req.digest, 'image digest')
    return dagCbor.encode({ digest: req.digest })
  }
  checkManifestCid(req.cid)
  return dagCbor.encode({ cid: req.cid })
}

/** @throws ProtocolError unless the frame asks for exactly one of a 32-byte image digest or a manifest CID */
export function decodeManifestRequest (frame: Uint8Array): ManifestRequest {
  const o = decodeRequestMap(frame, MANIFEST)
  const hasDigest = o.digest !== undefined
  const hasCid = o.cid !== undefined
  if (hasDigest === hasCid) throw new ProtocolError(`${MANIFEST.id}: a request names exactly one of digest and cid`)
  if (hasDigest) return { digest: checkDigest(o.digest, 'image digest') }
  return { cid: checkManifestCid(o.cid) }
}

export function encodeManifestResponse (msg: ManifestResponse): Uint8Array {
  switch (msg.type) {
    case 'header':
      if (!Number.isSafeInteger(msg.size) || msg.size < 0 || msg.size > MAX_MANIFEST_BYTES) throw new RangeError(`invalid manifest size ${msg.size}`)
      return withKind(KIND.manifestHeader, encodeVarint(msg.size))
    case 'piece':
      if (msg.bytes.length === 0 || msg.bytes.length > MANIFEST_PIECE_BYTES) throw new RangeError(`a manifest piece has 1 to ${MANIFEST_PIECE_BYTES} bytes, not ${msg.bytes.length}`)
      return withKind(KIND.manifestPiece, msg.bytes)
    case 'not-found': return Uint8Array.of(KIND.notFound)
    case 'error': return encodeError(msg)
  }
}

export function decodeManifestResponse (frame: Uint8Array): ManifestResponse {
  switch (kindOf(frame, MANIFEST)) {
    case KIND.manifestHeader: {
      const size = decodeWholeVarint(frame.subarray(1), MANIFEST, 'manifest size')
      if (size > MAX_MANIFEST_BYTES) throw new ProtocolError(`${MANIFEST.id}: a ${size}-byte manifest exceeds the ${MAX_MANIFEST_BYTES}-byte limit`)
      return { type: 'header', size }
    }
    case KIND.manifestPiece:
      if (frame.length < 2) throw new ProtocolError(`${MANIFEST.id}: an empty manifest piece`)
      return { type: 'piece', bytes: frame.subarray(1) }
    case KIND.notFound: return expectBare(frame, MANIFEST, { type: 'not-found' })
    case KIND.error: return decodeError(frame, MANIFEST)
    default: throw unknownKind(frame, MANIFEST)
  }
}

/** The frames that answer a manifest request: a header with the total size, then the pieces. */
export function * manifestResponseFrames (manifestBytes: Uint8Array): Generator<Uint8Array> {
  yield encodeManifestResponse({ type: 'header', size: manifestBytes.length })
  for (let off = 0; off < manifestBytes.length; off += MANIFEST_PIECE_BYTES) {
    yield encodeManifestResponse({ type: 'piece', bytes: manifestBytes.subarray(off, off + MANIFEST_PIECE_BYTES) })
  }
}

/**
 * Reads a whole manifest answer: the manifest bytes, or null when the peer does not have it. The
 * bytes are not checked here; `decodeManifest(bytes, expectedCid)` does that.
 * @throws RemoteError for an error answer; ProtocolError for a malformed, short or overlong answer
 */
export async function readManifestResponse (frames: AsyncIterable<Uint8Array>): Promise<Uint8Array | null> {
  let out: Uint8Array | null = null
  let filled = 0
  let state: 'start' | 'pieces' | 'done' = 'start'
  for await (const frame of frames) {
    const msg = decodeManifestResponse(frame)
    if (msg.type === 'error') throw remoteError(msg, MANIFEST)
    if (state === 'start' && msg.type === 'header') {
      out = new Uint8Array(msg.size)
      state = msg.size === 0 ? 'done' : 'pieces'
    } else if (state === 'start' && msg.type === 'not-found') {
      state = 'done'
    } else if (state === 'pieces' && msg.type === 'piece' && out != null) {
      if (filled + msg.bytes.length > out.length) throw new ProtocolError(`${MANIFEST.id}: the pieces exceed the announced ${out.length} bytes`)
      out.set(msg.bytes, filled)
      filled += msg.bytes.length
      if (filled === out.length) state = 'done'
    } else {
      throw new ProtocolError(`${MANIFEST.id}: unexpected ${msg.type} frame ${state === 'done' ? 'after the end of the answer' : `in state ${state}`}`)
    }
  }
  if (state !== 'done') throw new ProtocolError(`${MANIFEST.id}: the answer ended early (${filled} of ${out?.length ?? '?'} bytes)`)
  return out
}

// ---------------------------------------------------------------------------------------------
// have

export interface HaveRequest { manifest: CID }

/**
 * The chunks held. `fetching` says the responder is fetching the image right now, so that nodes
 * fetching it together can share out the origin reads among themselves (a node that merely holds
 * part of an image is no help with the rest).
 */
export type HaveResponse = { type: 'have', bitfield: Bitfield, fetching?: boolean } | NotFoundResponse | ErrorResponse

export function encodeHaveRequest (req: HaveRequest): Uint8Array {
  return dagCbor.encode({ manifest: checkManifestCid(req.manifest) })
}

export function decodeHaveRequest (frame: Uint8Array): HaveRequest {
  const o = decodeRequestMap(frame, HAVE)
  return { manifest: checkManifestCid(o.manifest) }
}

export function encodeHaveResponse (msg: HaveResponse): Uint8Array {
  switch (msg.type) {
    case 'have': {
      if (msg.bitfield.size > MAX_MANIFEST_CHUNKS) throw new RangeError(`a bitfield of ${msg.bitfield.size} chunks exceeds ${MAX_MANIFEST_CHUNKS}`)
      const count = encodeVarint(msg.bitfield.size)
      const out = new Uint8Array(1 + count.length + msg.bitfield.bytes.length)
      out[0] = msg.fetching === true ? KIND.haveFetching : KIND.have
      out.set(count, 1)
      out.set(msg.bitfield.bytes, 1 + count.length)
      return out
    }
    case 'not-found': return Uint8Array.of(KIND.notFound)
    case 'error': return encodeError(msg)
  }
}

/** @throws ProtocolError when the bitfield's length does not match its count or has stray tail bits */
export function decodeHaveResponse (frame: Uint8Array): HaveResponse {
  const kind = kindOf(frame, HAVE)
  switch (kind) {
    case KIND.have:
    case KIND.haveFetching: {
      const { value: size, length } = decodeVarint(frame, 1, HAVE, 'chunk count')
      if (size > MAX_MANIFEST_CHUNKS) throw new ProtocolError(`${HAVE.id}: ${size} chunks exceed the ${MAX_MANIFEST_CHUNKS} any manifest can list`)
      const bits = frame.subarray(1 + length)
      if (bits.length !== Bitfield.byteLength(size)) throw new ProtocolError(`${HAVE.id}: a bitfield of ${size} chunks has ${Bitfield.byteLength(size)} bytes, not ${bits.length}`)
      const bitfield = new Bitfield(size, bits)
      if (!bitfield.hasCleanTail()) throw new ProtocolError(`${HAVE.id}: bits set past the last chunk`)
      return { type: 'have', bitfield, fetching: kind === KIND.haveFetching }
    }
    case KIND.notFound: return expectBare(frame, HAVE, { type: 'not-found' })
    case KIND.error: return decodeError(frame, HAVE)
    default: throw unknownKind(frame, HAVE)
  }
}

/**
 * Reads a whole have answer: the bitfield, or null when the peer does not know the manifest.
 * @throws RemoteError for an error answer; ProtocolError for anything but exactly one frame
 */
export async function readHaveResponse (frames: AsyncIterable<Uint8Array>): Promise<Bitfield | null> {
  return (await readHaveAnswer(frames))?.bitfield ?? null
}

/** {@link readHaveResponse} with whether the responder is fetching the image now. */
export async function readHaveAnswer (frames: AsyncIterable<Uint8Array>): Promise<{ bitfield: Bitfield, fetching: boolean } | null> {
  let result: HaveResponse | undefined
  for await (const frame of frames) {
    if (result !== undefined) throw new ProtocolError(`${HAVE.id}: more than one frame in the answer`)
    result = decodeHaveResponse(frame)
    if (result.type === 'error') throw remoteError(result, HAVE)
  }
  if (result === undefined) throw new ProtocolError(`${HAVE.id}: the answer ended without a frame`)
  return result.type === 'have' ? { bitfield: result.bitfield, fetching: result.fetching === true } : null
}

// ---------------------------------------------------------------------------------------------
// have-updates

/** The requester's first frame: the image, and the requester's own bitfield when it is fetching it. */
/**
 * `candidates`: the requester takes candidates frames. A responder that sees it sends one after its
 * bitfield, and the requester sends its own only once it has had one, so neither ever sends a node of
 * the previous release a frame it does not know.
 */
export interface HaveUpdatesRequest { manifest: CID, have?: Uint8Array, fetching: boolean, candidates?: boolean }

/** Most candidates in one frame (as many as a fetch may keep), and the longest node id among them (a PeerId string is ~52 bytes). */
export const MAX_FRAME_CANDIDATES = MAX_CLAIMS
export const MAX_CANDIDATE_ID_BYTES = 128

/**
 * A later frame, either way: chunk index runs newly held, "I hold them all now", or the origin-read
 * candidates the sender knows with the chunks each holds.
 */
export type HaveUpdate =
  | { type: 'update', runs: Array<[start: number, length: number]> }
  | { type: 'complete' }
  | { type: 'candidates', candidates: Array<{ id: string, held: number }> }

export function encodeHaveUpdatesRequest (req: HaveUpdatesRequest): Uint8Array {
  const o: Record<string, unknown> = { manifest: checkManifestCid(req.manifest), fetching: req.fetching }
  if (req.have != null) o.have = req.have
  if (req.candidates === true) o.candidates = true
  return dagCbor.encode(o)
}

export function decodeHaveUpdatesRequest (frame: Uint8Array): HaveUpdatesRequest {
  const o = decodeRequestMap(frame, HAVE_UPDATES)
  if (o.have !== undefined && !(o.have instanceof Uint8Array)) throw new ProtocolError(`${HAVE_UPDATES.id}: have must be bytes`)
  if (o.fetching !== undefined && typeof o.fetching !== 'boolean') throw new ProtocolError(`${HAVE_UPDATES.id}: fetching must be a boolean`)
  return { manifest: checkManifestCid(o.manifest), have: o.have as Uint8Array | undefined, fetching: o.fetching === true, candidates: o.candidates === true }
}

export function encodeHaveUpdate (msg: HaveUpdate): Uint8Array {
  if (msg.type === 'complete') return Uint8Array.of(KIND.complete)
  if (msg.type === 'candidates') {
    if (msg.candidates.length > MAX_FRAME_CANDIDATES) throw new RangeError(`${msg.candidates.length} candidates exceed ${MAX_FRAME_CANDIDATES} in one frame`)
    const parts: Uint8Array[] = [encodeVarint(msg.candidates.length)]
    for (const c of msg.candidates) {
      const id = new TextEncoder().encode(c.id)
      if (id.length === 0 || id.length > MAX_CANDIDATE_ID_BYTES || !Number.isSafeInteger(c.held) || c.held < 0) throw new RangeError(`invalid candidate ${c.id} holding ${c.held}`)
      parts.push(encodeVarint(id.length), id, encodeVarint(c.held))
    }
    return withKind(KIND.candidates, ...parts)
  }
  if (msg.runs.length > MAX_UPDATE_RUNS) throw new RangeError(`${msg.runs.length} runs exceed ${MAX_UPDATE_RUNS} in one update`)
  const parts: Uint8Array[] = [encodeVarint(msg.runs.length)]
  for (const [start, length] of msg.runs) {
    if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(length) || length < 1 || start + length > MAX_MANIFEST_CHUNKS) throw new RangeError(`invalid run ${start}+${length}`)
    parts.push(encodeVarint(start), encodeVarint(length))
  }
  return withKind(KIND.update, ...parts)
}

/**
 * A later have-updates frame, its runs and counts checked against the image's chunk count.
 * @throws ProtocolError for a malformed frame, a run past the last chunk or a candidate out of bounds
 */
export function decodeHaveUpdate (frame: Uint8Array, chunkCount: number): HaveUpdate {
  switch (kindOf(frame, HAVE_UPDATES)) {
    case KIND.complete: return expectBare(frame, HAVE_UPDATES, { type: 'complete' })
    case KIND.update: return decodeRuns(frame, chunkCount)
    case KIND.candidates: return decodeCandidates(frame, chunkCount)
    default: throw unknownKind(frame, HAVE_UPDATES)
  }
}

/** Reads the fields of a have-updates frame after its kind byte. */
class FrameCursor {
  off = 1
  constructor (private readonly frame: Uint8Array) {}

  varint (what: string): number {
    const { value, length } = decodeVarint(this.frame, this.off, HAVE_UPDATES, what)
    this.off += length
    return value
  }

  end (what: string): void {
    if (this.off !== this.frame.length) throw new ProtocolError(`${HAVE_UPDATES.id}: trailing bytes after the ${what}`)
  }
}

function decodeRuns (frame: Uint8Array, chunkCount: number): HaveUpdate {
  const c = new FrameCursor(frame)
  const n = c.varint('run count')
  if (n > MAX_UPDATE_RUNS) throw new ProtocolError(`${HAVE_UPDATES.id}: ${n} runs exceed the ${MAX_UPDATE_RUNS} of one update`)
  const runs: Array<[number, number]> = []
  for (let i = 0; i < n; i++) {
    const start = c.varint('run start')
    const length = c.varint('run length')
    if (length < 1 || start + length > chunkCount) throw new ProtocolError(`${HAVE_UPDATES.id}: run ${start}+${length} outside an image of ${chunkCount} chunks`)
    runs.push([start, length])
  }
  c.end('runs')
  return { type: 'update', runs }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function decodeCandidates (frame: Uint8Array, chunkCount: number): HaveUpdate {
  const c = new FrameCursor(frame)
  const n = c.varint('candidate count')
  if (n > MAX_FRAME_CANDIDATES) throw new ProtocolError(`${HAVE_UPDATES.id}: ${n} candidates exceed the ${MAX_FRAME_CANDIDATES} of one frame`)
  const candidates: Array<{ id: string, held: number }> = []
  for (let i = 0; i < n; i++) {
    const length = c.varint('candidate id length')
    if (length < 1 || length > MAX_CANDIDATE_ID_BYTES || c.off + length > frame.length) throw new ProtocolError(`${HAVE_UPDATES.id}: a candidate id of ${length} bytes (1 to ${MAX_CANDIDATE_ID_BYTES}, within the frame)`)
    let id: string
    try {
      id = strictUtf8.decode(frame.subarray(c.off, c.off + length))
    } catch {
      throw new ProtocolError(`${HAVE_UPDATES.id}: a candidate id that is not UTF-8`)
    }
    c.off += length
    const held = c.varint('candidate count of chunks')
    if (held > chunkCount) throw new ProtocolError(`${HAVE_UPDATES.id}: candidate ${id} holds ${held} chunks of an image of ${chunkCount}`)
    candidates.push({ id, held })
  }
  c.end('candidates')
  return { type: 'candidates', candidates }
}

/** Sorted chunk indices as runs of consecutive indices, in frames of at most {@link MAX_UPDATE_RUNS} runs. */
export function indexRuns (indices: Iterable<number>): Array<Array<[number, number]>> {
  const sorted = [...new Set(indices)].sort((a, b) => a - b)
  const frames: Array<Array<[number, number]>> = []
  let runs: Array<[number, number]> = []
  for (const i of sorted) {
    const last = runs[runs.length - 1]
    if (last != null && last[0] + last[1] === i) { last[1]++; continue }
    if (runs.length === MAX_UPDATE_RUNS) { frames.push(runs); runs = [] }
    runs.push([i, 1])
  }
  if (runs.length > 0) frames.push(runs)
  return frames
}

// ---------------------------------------------------------------------------------------------
// chunks

export interface ChunksRequest {
  /** 1 to {@link MAX_CHUNK_BATCH} chunk digests (the sha256 inside each chunk CID), 32 bytes each. */
  digests: Uint8Array[]
}

export type ChunksResponse = { type: 'chunk', bytes: Uint8Array } | { type: 'missing' } | ErrorResponse

export function encodeChunksRequest (req: ChunksRequest): Uint8Array {
  checkBatchSize(req.digests.length)
  const packed = new Uint8Array(32 * req.digests.length)
  req.digests.forEach((d, i) => { packed.set(checkDigest(d, 'chunk digest'), 32 * i) })
  return dagCbor.encode({ digests: packed })
}

export function decodeChunksRequest (frame: Uint8Array): ChunksRequest {
  const o = decodeRequestMap(frame, CHUNKS)
  const packed: unknown = o.digests
  if (!(packed instanceof Uint8Array) || packed.length % 32 !== 0) throw new ProtocolError(`${CHUNKS.id}: digests must be bytes, a multiple of 32 long`)
  checkBatchSize(packed.length / 32)
  const digests: Uint8Array[] = []
  for (let off = 0; off < packed.length; off += 32) digests.push(packed.subarray(off, off + 32))
  return { digests }
}

export function encodeChunksResponse (msg: ChunksResponse): Uint8Array {
  switch (msg.type) {
    case 'chunk':
      if (msg.bytes.length === 0 || msg.bytes.length > MAX_CHUNK_SIZE) throw new RangeError(`a chunk has 1 to ${MAX_CHUNK_SIZE} bytes, not ${msg.bytes.length}`)
      return withKind(KIND.chunk, msg.bytes)
    case 'missing': return Uint8Array.of(KIND.missing)
    case 'error': return encodeError(msg)
  }
}

export function decodeChunksResponse (frame: Uint8Array): ChunksResponse {
  switch (kindOf(frame, CHUNKS)) {
    case KIND.chunk:
      if (frame.length < 2) throw new ProtocolError(`${CHUNKS.id}: an empty chunk`)
      return { type: 'chunk', bytes: frame.subarray(1) }
    case KIND.missing: return expectBare(frame, CHUNKS, { type: 'missing' })
    case KIND.error: return decodeError(frame, CHUNKS)
    default: throw unknownKind(frame, CHUNKS)
  }
}

/** One requested chunk's outcome, paired with the digest it was asked for (bytes not yet verified). */
export type ChunkResult = { digest: Uint8Array, bytes: Uint8Array } | { digest: Uint8Array, missing: true }

/**
 * Pairs a chunks answer with the request, in order, as the frames arrive. A responder that stops
 * early, answers too much, or sends an error is reported (never silently skipped).
 * @throws RemoteError for an error answer (after the chunks before it were yielded); ProtocolError
 *   when the answer has fewer or more frames than digests requested
 */
export async function * readChunksResponse (requested: readonly Uint8Array[], frames: AsyncIterable<Uint8Array>): AsyncGenerator<ChunkResult, void, undefined> {
  let i = 0
  for await (const frame of frames) {
    const msg = decodeChunksResponse(frame)
    if (msg.type === 'error') throw remoteError(msg, CHUNKS)
    if (i >= requested.length) throw new ProtocolError(`${CHUNKS.id}: more answers than the ${requested.length} chunks requested`)
    const digest = requested[i++]
    yield msg.type === 'chunk' ? { digest, bytes: msg.bytes } : { digest, missing: true }
  }
  if (i < requested.length) throw new ProtocolError(`${CHUNKS.id}: the answer ended after ${i} of ${requested.length} chunks`)
}

// ---------------------------------------------------------------------------------------------
// shared

/** The error frame, valid on every protocol. The message is cut to {@link MAX_ERROR_MESSAGE_BYTES}. */
export function encodeError (msg: Omit<ErrorResponse, 'type'>): Uint8Array {
  const text = new TextEncoder().encode(msg.message)
  const cut = text.subarray(0, MAX_ERROR_MESSAGE_BYTES)
  return withKind(KIND.error, Uint8Array.of(REASON_CODES[msg.reason]), cut)
}

function decodeError (frame: Uint8Array, p: FrameProtocol): ErrorResponse {
  if (frame.length < 2) throw new ProtocolError(`${p.id}: an error frame without a reason`)
  if (frame.length > 2 + MAX_ERROR_MESSAGE_BYTES) throw new ProtocolError(`${p.id}: an error message over ${MAX_ERROR_MESSAGE_BYTES} bytes`)
  // A newer peer may know reasons we do not; treat them as its own failure rather than reject the frame.
  const reason = REASONS.get(frame[1]) ?? 'internal'
  const message = new TextDecoder('utf-8', { fatal: false }).decode(frame.subarray(2))
  return { type: 'error', reason, message }
}

/** The RemoteError an error answer stands for. */
export function remoteError (msg: ErrorResponse, p: FrameProtocol): RemoteError {
  return new RemoteError(`${p.id}: the peer answered ${msg.reason}: ${msg.message}`, msg.reason)
}

/** True for a manifest CID as `manifestCid` makes them: CIDv1, dag-cbor, sha2-256. */
export function isManifestCid (cid: CID): boolean {
  return cid.version === 1 && cid.code === dagCbor.code && cid.multihash.code === sha256Hasher.code && cid.multihash.digest.length === 32
}

function decodeRequestMap (frame: Uint8Array, p: FrameProtocol): Record<string, unknown> {
  let o: unknown
  try {
    o = dagCbor.decode(frame)
  } catch (err) {
    throw new ProtocolError(`${p.id}: the request is not valid dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  if (o == null || typeof o !== 'object' || Array.isArray(o) || o instanceof Uint8Array || CID.asCID(o) != null) {
    throw new ProtocolError(`${p.id}: the request is not a map`)
  }
  return o as Record<string, unknown>
}

function checkDigest (d: unknown, what: string): Uint8Array {
  if (!(d instanceof Uint8Array) || d.length !== 32) throw new ProtocolError(`a ${what} must be 32 bytes`)
  return d
}

function checkManifestCid (c: unknown): CID {
  const cid = CID.asCID(c)
  if (cid == null || !isManifestCid(cid)) throw new ProtocolError(`not a manifest CID (CIDv1, dag-cbor, sha2-256): ${describe(c)}`)
  return cid
}

function checkBatchSize (n: number): void {
  if (n < 1 || n > MAX_CHUNK_BATCH) throw new ProtocolError(`${CHUNKS.id}: a batch asks for 1 to ${MAX_CHUNK_BATCH} chunks, not ${n}`)
}

function withKind (kind: number, ...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0))
  out[0] = kind
  let off = 1
  for (const p of parts) { out.set(p, off); off += p.length }
  return out
}

function kindOf (frame: Uint8Array, p: FrameProtocol): number {
  if (frame.length === 0) throw new ProtocolError(`${p.id}: an empty response frame`)
  return frame[0]
}

function expectBare<T> (frame: Uint8Array, p: FrameProtocol, msg: T): T {
  if (frame.length !== 1) throw new ProtocolError(`${p.id}: a ${frame.length}-byte frame where one byte was expected`)
  return msg
}

function unknownKind (frame: Uint8Array, p: FrameProtocol): ProtocolError {
  return new ProtocolError(`${p.id}: unknown response kind 0x${frame[0].toString(16).padStart(2, '0')}`)
}

function decodeVarint (bytes: Uint8Array, offset: number, p: FrameProtocol, what: string): { value: number, length: number } {
  let value = 0
  let scale = 1
  for (let i = offset; i < bytes.length && i - offset < 8; i++) {
    const b = bytes[i]
    value += (b & 0x7f) * scale
    scale *= 128
    if ((b & 0x80) === 0) {
      if (b === 0 && i > offset) break
      return { value, length: i - offset + 1 }
    }
  }
  throw new ProtocolError(`${p.id}: malformed ${what}`)
}

function decodeWholeVarint (bytes: Uint8Array, p: FrameProtocol, what: string): number {
  const { value, length } = decodeVarint(bytes, 0, p, what)
  if (length !== bytes.length) throw new ProtocolError(`${p.id}: trailing bytes after the ${what}`)
  return value
}
