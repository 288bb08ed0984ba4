import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import t from 'tap'
import { MAX_MANIFEST_BYTES, manifestCid } from '../src/chunks/manifest.js'
import { PeerTimeoutError, ProtocolError } from '../src/errors.js'
import { Bitfield } from '../src/peer/bitfield.js'
import { encodeVarint, frameStream } from '../src/peer/frames.js'
import { peerBits } from '../src/peer/have-updates.js'
import {
  MANIFEST_PIECE_BYTES, MAX_CHUNK_BATCH, MAX_ERROR_MESSAGE_BYTES, MAX_MANIFEST_CHUNKS, MAX_CANDIDATE_ID_BYTES, MAX_FRAME_CANDIDATES, MAX_UPDATE_RUNS, decodeChunksRequest,
  decodeChunksResponse, decodeHaveRequest, decodeHaveResponse, decodeHaveUpdate, decodeHaveUpdatesRequest, decodeManifestRequest,
  decodeManifestResponse, encodeChunksRequest, encodeChunksResponse, encodeHaveRequest, encodeHaveResponse, encodeHaveUpdate,
  encodeHaveUpdatesRequest, encodeManifestRequest, encodeManifestResponse, indexRuns, isManifestCid, manifestResponseFrames,
  readChunksResponse, readHaveAnswer, readManifestResponse, type ChunksResponse, type HaveResponse, type ManifestResponse
} from '../src/peer/protocols.js'
import type { Stream } from '../src/peer/types.js'
import { decodeHoldsRequest, decodeHoldsResponse, encodeHoldsRequest } from '../src/swarm/holds.js'
import { decodePolicies, encodePolicies } from '../src/swarm/policy-protocol.js'
import {
  MAX_PREHEAT_REFS, decodePreheatRequest, decodePreheatResponse, encodePreheatRequest, encodePreheatResponse,
  type ImageProgress, type PreheatResponse
} from '../src/swarm/preheat-protocol.js'
import { MAX_POLICIES, checkPolicy, type ReplicaPolicy } from '../src/swarm/replica-policies.js'
import { dagMap, dagValue, fuzzParams, mutate, mutations, ownErrorOr, ownErrorOrAsync, piecesOf } from './helpers/fuzz.js'

/*
 * Fuzzing of everything a peer can send: the frame layer's length prefixes, and each protocol's
 * request and response decoders. A decoder returns a message that meets its invariants (it re-encodes
 * to the same bytes, sizes within the documented bounds) or throws one of our errors; nothing else.
 */

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 })
const hex64 = bytes32.map(b => Buffer.from(b).toString('hex'))
/** Manifest CIDs (of arbitrary bytes: only the CID's form matters to these decoders). */
const manifestCidArb = bytes32.map(d => manifestCid(d))

/** Bytes a peer might send where a dag-cbor request is expected: noise, arbitrary maps, valid requests mutated. */
function requestFrames (valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    dagMap.map(m => tryEncode(m)).filter((b): b is Uint8Array => b != null),
    fc.tuple(valid, mutations).map(([b, ops]) => mutate(b, ops)),
    valid
  )
}

function tryEncode (v: unknown): Uint8Array | undefined {
  try { return dagCbor.encode(v) } catch { return undefined }
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b))

// ---------------------------------------------------------------------------------------------
// The frame layer, over a stream double that delivers the bytes in arbitrary pieces.

class FakeStream extends EventTarget {
  status = 'open'
  readStatus = 'readable'
  writeStatus = 'writable'
  remoteWriteStatus = 'writable'
  readBufferLength = 0
  writableNeedsDrain = false
  protocol = '/fuzz/1.0.0'
  pause (): void { this.readStatus = 'paused' }
  resume (): void { this.readStatus = 'readable' }
  abort (_err: Error): void { this.status = 'aborted'; this.readStatus = 'closed' }
  send (): boolean { return true }
  async close (): Promise<void> {}
  deliver (data: Uint8Array): void { this.dispatchEvent(Object.assign(new Event('message'), { data })) }
  endRemote (): void {
    this.remoteWriteStatus = 'closed'
    this.dispatchEvent(new Event('remoteCloseWrite'))
  }
}

/** Feeds `bytes` in pieces, then the peer's end of stream, reading frames as they complete. */
async function readAllFrames (bytes: Uint8Array, sizes: number[], maxFrameBytes: number): Promise<Uint8Array[]> {
  const stream = new FakeStream()
  // Short, so that a reader that waits for bytes that will never come fails fast (and visibly).
  const frames = frameStream(stream as unknown as Stream, { maxFrameBytes, timeoutMs: 1000 })
  const out: Uint8Array[] = []
  const reading = (async () => {
    for await (const f of frames) out.push(Uint8Array.from(f))
  })()
  reading.catch(() => {}) // observed below, once every byte was delivered
  for await (const piece of piecesOf(bytes, sizes)) {
    stream.deliver(piece)
    await new Promise(resolve => setImmediate(resolve))
  }
  stream.endRemote()
  await reading
  return out
}

const encodeFrames = (frames: Uint8Array[]): Uint8Array => Buffer.concat(frames.flatMap(f => [encodeVarint(f.length), f]))

t.test('frame layer: valid frames in any pieces come out whole and in order', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }),
    fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 5 }),
    async (frames, sizes) => {
      const got = await readAllFrames(encodeFrames(frames), sizes, 300)
      return got.length === frames.length && got.every((f, i) => same(f, frames[i]))
    }), fuzzParams(150))
})

t.test('frame layer: hostile length prefixes and bytes end in a ProtocolError or a clean end, never a hang', async () => {
  const max = 256
  await fc.assert(fc.asyncProperty(
    fc.oneof(
      fc.uint8Array({ maxLength: 120 }),
      fc.tuple(fc.array(fc.uint8Array({ maxLength: max }), { maxLength: 4 }), mutations).map(([fs, ops]) => mutate(encodeFrames(fs), ops))
    ),
    fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 4 }),
    async (bytes, sizes) => {
      let got: Uint8Array[] | undefined
      try {
        got = await readAllFrames(bytes, sizes, max)
      } catch (err) {
        // The peer finished sending: waiting for more would be a hang, not a protocol error.
        if (err instanceof PeerTimeoutError) throw new Error('the reader waited after the stream ended', { cause: err })
        if (!(err instanceof ProtocolError)) throw err
        return
      }
      // A clean end: the frames account for every byte, each within the bound.
      const total = got.reduce((n, f) => n + encodeVarint(f.length).length + f.length, 0)
      if (total !== bytes.length || got.some(f => f.length > max)) throw new Error(`frames of ${total} bytes from ${bytes.length}`)
    }), fuzzParams(200))
})

t.test('frame layer regressions', async t => {
  await t.rejects(readAllFrames(Uint8Array.of(0x81, 0x00, 0x01), [1], 64), ProtocolError, 'a redundant zero byte')
  await t.rejects(readAllFrames(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), [3], 64), ProtocolError, 'a 9-byte length')
  await t.rejects(readAllFrames(Uint8Array.of(0x05, 1, 2), [1], 64), ProtocolError, 'the stream ends inside a frame')
  t.same(await readAllFrames(Uint8Array.of(0x00, 0x01, 0x07), [1], 64), [new Uint8Array(0), Uint8Array.of(7)])
})

// ---------------------------------------------------------------------------------------------
// manifest, have, chunks

/** Decodes, checks the invariant, and re-decodes what the value encodes to: it must come back the same. */
function stable<T> (decode: (b: Uint8Array) => T, encode: (v: T) => Uint8Array, frame: Uint8Array, check: (v: T) => boolean): boolean {
  const v = ownErrorOr('decode', () => decode(frame))
  if (v === undefined) return true
  if (!check(v)) throw new Error(`decoded to a value that breaks the invariant: ${String(JSON.stringify(v, (_k, x) => x instanceof Uint8Array ? `<${x.length} bytes>` : x))}`)
  const again = decode(encode(v))
  return same(encode(again), encode(v))
}

const validManifestRequest = fc.oneof(
  bytes32.map(digest => encodeManifestRequest({ digest })),
  manifestCidArb.map(cid => encodeManifestRequest({ cid }))
)
const validHaveRequest = manifestCidArb.map(manifest => encodeHaveRequest({ manifest }))
const validChunksRequest = fc.array(bytes32, { minLength: 1, maxLength: 8 }).map(digests => encodeChunksRequest({ digests }))

t.test('manifest, have and chunks requests', async () => {
  await fc.assert(fc.property(requestFrames(validManifestRequest), frame => stable(decodeManifestRequest, encodeManifestRequest, frame,
    r => 'digest' in r ? r.digest.length === 32 : isManifestCid(r.cid))), fuzzParams(400))
  await fc.assert(fc.property(requestFrames(validHaveRequest), frame => stable(decodeHaveRequest, encodeHaveRequest, frame,
    r => isManifestCid(r.manifest))), fuzzParams(400))
  await fc.assert(fc.property(requestFrames(validChunksRequest), frame => stable(decodeChunksRequest, encodeChunksRequest, frame,
    r => r.digests.length >= 1 && r.digests.length <= MAX_CHUNK_BATCH && r.digests.every(d => d.length === 32))), fuzzParams(400))
})

const errorMessage = fc.string({ maxLength: 40 })
const reason = fc.constantFrom('busy' as const, 'internal' as const, 'bad-request' as const)
const validManifestResponse: fc.Arbitrary<ManifestResponse> = fc.oneof(
  fc.integer({ min: 0, max: MAX_MANIFEST_BYTES }).map(size => ({ type: 'header' as const, size })),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map(bytes => ({ type: 'piece' as const, bytes })),
  fc.constant({ type: 'not-found' as const }),
  fc.record({ type: fc.constant('error' as const), reason, message: errorMessage })
)
const validHaveResponse: fc.Arbitrary<HaveResponse> = fc.oneof(
  fc.tuple(fc.array(fc.boolean(), { maxLength: 100 }), fc.boolean()).map(([bits, fetching]) => ({ type: 'have' as const, bitfield: Bitfield.from(bits), fetching })),
  fc.constant({ type: 'not-found' as const }),
  fc.record({ type: fc.constant('error' as const), reason, message: errorMessage })
)
const validChunksResponse: fc.Arbitrary<ChunksResponse> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map(bytes => ({ type: 'chunk' as const, bytes })),
  fc.constant({ type: 'missing' as const }),
  fc.record({ type: fc.constant('error' as const), reason, message: errorMessage })
)

/** Random bytes with a plausible kind byte first, and valid frames mutated. */
function responseFrames<T> (valid: fc.Arbitrary<T>, encode: (v: T) => Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc.tuple(fc.constantFrom(0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0xff), fc.uint8Array({ maxLength: 80 })).map(([k, b]) => Uint8Array.of(k, ...b)),
    fc.tuple(valid.map(encode), mutations).map(([b, ops]) => mutate(b, ops))
  )
}

t.test('manifest, have and chunks responses: valid ones round-trip byte for byte', async () => {
  await fc.assert(fc.property(validManifestResponse, m => same(encodeManifestResponse(decodeManifestResponse(encodeManifestResponse(m))), encodeManifestResponse(m))), fuzzParams(300))
  await fc.assert(fc.property(validHaveResponse, m => same(encodeHaveResponse(decodeHaveResponse(encodeHaveResponse(m))), encodeHaveResponse(m))), fuzzParams(300))
  await fc.assert(fc.property(validChunksResponse, m => same(encodeChunksResponse(decodeChunksResponse(encodeChunksResponse(m))), encodeChunksResponse(m))), fuzzParams(300))
})

t.test('manifest, have and chunks responses: hostile frames decode within bounds or throw ProtocolError', async () => {
  await fc.assert(fc.property(responseFrames(validManifestResponse, encodeManifestResponse), frame => {
    const m = ownErrorOr('decodeManifestResponse', () => decodeManifestResponse(frame))
    if (m?.type === 'header') return m.size >= 0 && m.size <= MAX_MANIFEST_BYTES && same(encodeManifestResponse(m), frame)
    if (m?.type === 'piece') return m.bytes.length >= 1 && m.bytes.length <= frame.length - 1 && same(encodeManifestResponse(m), frame)
    if (m?.type === 'error') return Buffer.byteLength(m.message) <= 3 * MAX_ERROR_MESSAGE_BYTES
    return true
  }), fuzzParams(500))
  await fc.assert(fc.property(responseFrames(validHaveResponse, encodeHaveResponse), frame => {
    const m = ownErrorOr('decodeHaveResponse', () => decodeHaveResponse(frame))
    if (m?.type !== 'have') return true
    const b = m.bitfield
    return b.size <= MAX_MANIFEST_CHUNKS && b.bytes.length === Bitfield.byteLength(b.size) && b.hasCleanTail() &&
      b.count() <= b.size && same(encodeHaveResponse(m), frame)
  }), fuzzParams(500))
  await fc.assert(fc.property(responseFrames(validChunksResponse, encodeChunksResponse), frame => {
    const m = ownErrorOr('decodeChunksResponse', () => decodeChunksResponse(frame))
    if (m?.type === 'chunk' || m?.type === 'missing') return same(encodeChunksResponse(m), frame)
    return true
  }), fuzzParams(500))
})

async function * framesOf (frames: Uint8Array[]): AsyncGenerator<Uint8Array> { yield * frames }

t.test('whole answers: a manifest, a have bitfield, a chunks batch', async () => {
  // A valid answer, then mutated: dropped, repeated or changed frames.
  const answer = fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.array(fc.tuple(fc.nat(), mutations), { maxLength: 3 }), fc.nat())
  await fc.assert(fc.asyncProperty(answer, async ([manifest, edits, drop]) => {
    const frames = [...manifestResponseFrames(manifest)]
    for (const [i, ops] of edits) frames[i % frames.length] = mutate(frames[i % frames.length], ops)
    if (drop % 3 === 0 && frames.length > 1) frames.splice(drop % frames.length, 1)
    if (drop % 5 === 0) frames.push(frames[drop % frames.length])
    const got = await ownErrorOrAsync('readManifestResponse', async () => await readManifestResponse(framesOf(frames)))
    // Whatever comes back has exactly the announced size; the untouched answer comes back as it was.
    const header = got != null ? decodeManifestResponse(frames[0]) : undefined
    if (got != null && (header?.type !== 'header' || got.length !== header.size)) return false
    return edits.length > 0 || drop % 3 === 0 || drop % 5 === 0 || (got != null && same(got, manifest))
  }), fuzzParams(150))
  // Pieces far beyond the declared size are refused as they come, not buffered.
  await t.rejects(readManifestResponse(framesOf([encodeManifestResponse({ type: 'header', size: 2 }), encodeManifestResponse({ type: 'piece', bytes: new Uint8Array(MANIFEST_PIECE_BYTES) })])), ProtocolError)

  await fc.assert(fc.asyncProperty(fc.array(responseFrames(validHaveResponse, encodeHaveResponse), { maxLength: 3 }), async frames => {
    const got = await ownErrorOrAsync('readHaveAnswer', async () => await readHaveAnswer(framesOf(frames)))
    return got == null || (frames.length === 1 && got.bitfield.size <= MAX_MANIFEST_CHUNKS)
  }), fuzzParams(300))

  await fc.assert(fc.asyncProperty(fc.array(bytes32, { minLength: 1, maxLength: 5 }), fc.array(responseFrames(validChunksResponse, encodeChunksResponse), { maxLength: 7 }), async (requested, frames) => {
    const results: unknown[] = []
    const ok = await ownErrorOrAsync('readChunksResponse', async () => {
      for await (const r of readChunksResponse(requested, framesOf(frames))) results.push(r)
      return true
    })
    // Never more results than digests asked; a complete answer has exactly one per digest.
    return results.length <= requested.length && (ok !== true || results.length === requested.length)
  }), fuzzParams(300))
})

t.test('bitfields from wire bytes', async () => {
  await fc.assert(fc.property(fc.array(fc.boolean(), { maxLength: 200 }), bits => {
    const b = Bitfield.from(bits)
    const decoded = decodeHaveResponse(encodeHaveResponse({ type: 'have', bitfield: b }))
    if (decoded.type !== 'have') return false
    return bits.every((v, i) => decoded.bitfield.has(i) === v) && !decoded.bitfield.has(bits.length) && decoded.bitfield.count() === bits.filter(Boolean).length
  }), fuzzParams(300))
})

// ---------------------------------------------------------------------------------------------
// have-updates: the first request frame, the update frames both ways, the requester's bitfield

t.test('have-updates requests', async () => {
  const valid = fc.record({ manifest: manifestCidArb, have: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }), fetching: fc.boolean(), candidates: fc.boolean() })
    .map(r => encodeHaveUpdatesRequest(r))
  await fc.assert(fc.property(requestFrames(valid), frame => stable(decodeHaveUpdatesRequest, encodeHaveUpdatesRequest, frame,
    r => isManifestCid(r.manifest) && (r.have === undefined || r.have instanceof Uint8Array) && typeof r.fetching === 'boolean')), fuzzParams(400))
})

/** An image's chunk count, and a set of its chunk indices. */
const indicesOf = fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.constantFrom(1, 8, 9, MAX_MANIFEST_CHUNKS))
  .chain(n => fc.tuple(fc.constant(n), fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { maxLength: 60 })))

t.test('have-updates: update frames', async () => {
  // Valid updates decode to the runs they were made of, covering exactly the indices.
  await fc.assert(fc.property(indicesOf, ([n, indices]) => {
    const covered = new Set<number>()
    for (const runs of indexRuns(indices)) {
      const u = decodeHaveUpdate(encodeHaveUpdate({ type: 'update', runs }), n)
      if (u.type !== 'update') return false
      for (const [start, length] of u.runs) for (let i = start; i < start + length; i++) covered.add(i)
    }
    return covered.size === indices.length && indices.every(i => covered.has(i))
  }), fuzzParams(300))
  // Hostile frames: runs inside the image, at most MAX_UPDATE_RUNS, re-encoding to the same bytes; or a ProtocolError.
  const frames = fc.oneof(
    fc.tuple(indicesOf, mutations).map(([[n, indices], ops]) => ({ n, frame: mutate(encodeHaveUpdate({ type: 'update', runs: indexRuns(indices)[0] ?? [] }), ops) })),
    fc.record({ n: fc.integer({ min: 1, max: 3000 }), frame: fc.uint8Array({ maxLength: 80 }) }),
    fc.record({ n: fc.integer({ min: 1, max: 3000 }), frame: fc.constantFrom(Uint8Array.of(0), Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(1, 0), Uint8Array.of(0, 0)) })
  )
  await fc.assert(fc.property(frames, ({ n, frame }) => {
    const u = ownErrorOr('decodeHaveUpdate', () => decodeHaveUpdate(frame, n))
    if (u === undefined) return true
    if (u.type === 'complete') return frame.length === 1
    if (u.type === 'candidates') return candidatesValid(u.candidates, n) && same(encodeHaveUpdate(u), frame)
    return u.runs.length <= MAX_UPDATE_RUNS &&
      u.runs.every(([start, length]) => Number.isSafeInteger(start) && start >= 0 && length >= 1 && start + length <= n) &&
      same(encodeHaveUpdate(u), frame)
  }), fuzzParams(500))
})

/** Candidates as a frame may carry them: at most the frame's limit, ids of 1 to 128 UTF-8 bytes, counts within the image. */
function candidatesValid (candidates: Array<{ id: string, held: number }>, n: number): boolean {
  return candidates.length <= MAX_FRAME_CANDIDATES && candidates.every(c => {
    const bytes = Buffer.byteLength(c.id)
    return bytes >= 1 && bytes <= MAX_CANDIDATE_ID_BYTES && Number.isSafeInteger(c.held) && c.held >= 0 && c.held <= n
  })
}

t.test('have-updates: candidates frames', async () => {
  const claimsOf = fc.integer({ min: 1, max: 3000 }).chain(n => fc.tuple(fc.constant(n),
    fc.array(fc.record({ id: fc.string({ minLength: 1, maxLength: 40 }), held: fc.integer({ min: 0, max: n }) }), { maxLength: MAX_FRAME_CANDIDATES })))
  // Valid frames decode to what they were made of.
  await fc.assert(fc.property(claimsOf, ([n, candidates]) => {
    const u = decodeHaveUpdate(encodeHaveUpdate({ type: 'candidates', candidates }), n)
    return u.type === 'candidates' && JSON.stringify(u.candidates) === JSON.stringify(candidates)
  }), fuzzParams(300))
  // Hostile frames: within every bound and re-encoding to the same bytes, or a ProtocolError.
  const frames = fc.oneof(
    fc.tuple(claimsOf, mutations).map(([[n, candidates], ops]) => ({ n, frame: mutate(encodeHaveUpdate({ type: 'candidates', candidates }), ops) })),
    fc.record({ n: fc.integer({ min: 1, max: 3000 }), frame: fc.uint8Array({ maxLength: 80 }).map(b => Uint8Array.of(0x0a, ...b)) })
  )
  await fc.assert(fc.property(frames, ({ n, frame }) => {
    const u = ownErrorOr('decodeHaveUpdate', () => decodeHaveUpdate(frame, n))
    if (u === undefined) return true
    if (u.type === 'complete') return frame.length === 1
    if (u.type === 'update') return same(encodeHaveUpdate(u), frame)
    return candidatesValid(u.candidates, n) && same(encodeHaveUpdate(u), frame)
  }), fuzzParams(500))
})

t.test('have-updates: the requester\'s bitfield', async () => {
  const cases = fc.oneof(
    fc.tuple(fc.array(fc.boolean(), { minLength: 1, maxLength: 100 }), mutations).map(([bits, ops]) => ({ n: bits.length, bytes: mutate(Bitfield.from(bits).bytes, ops) })),
    fc.record({ n: fc.integer({ min: 1, max: 100 }), bytes: fc.uint8Array({ maxLength: 16 }) })
  )
  await fc.assert(fc.property(cases, ({ n, bytes }) => {
    const bits = ownErrorOr('peerBits', () => peerBits(bytes, n))
    return bits === undefined || (bits.length === Bitfield.byteLength(n) && new Bitfield(n, bits).hasCleanTail())
  }), fuzzParams(400))
})

// ---------------------------------------------------------------------------------------------
// holds, policy, preheat

t.test('holds requests and answers', async () => {
  const valid = fc.array(hex64, { minLength: 1, maxLength: 8 }).map(encodeHoldsRequest)
  await fc.assert(fc.property(requestFrames(valid), frame => {
    const hexes = ownErrorOr('decodeHoldsRequest', () => decodeHoldsRequest(frame))
    return hexes === undefined || (hexes.length >= 1 && hexes.length <= MAX_POLICIES && hexes.every(h => /^[0-9a-f]{64}$/.test(h)))
  }), fuzzParams(400))
  const answers = fc.tuple(fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }), mutations).map(([bits, ops]) =>
    ({ n: bits.length, frame: mutate(dagCbor.encode({ held: Bitfield.from(bits).bytes }), ops) }))
  await fc.assert(fc.property(fc.oneof(answers, fc.record({ n: fc.integer({ min: 1, max: 40 }), frame: requestFrames(fc.constant(dagCbor.encode({ held: new Uint8Array(1) }))) })), ({ n, frame }) => {
    const held = ownErrorOr('decodeHoldsResponse', () => decodeHoldsResponse(frame, n))
    return held === undefined || held.length === n
  }), fuzzParams(400))
})

const policy: fc.Arbitrary<ReplicaPolicy> = fc.record({
  image: hex64,
  min: fc.integer({ min: 0, max: 64 }),
  ts: fc.integer({ min: 0, max: Date.now() }),
  by: fc.string({ minLength: 1, maxLength: 60 })
})

t.test('policy frames', async () => {
  await fc.assert(fc.property(fc.array(policy, { maxLength: 6 }), ps => {
    const back = decodePolicies(encodePolicies(ps)).map(e => checkPolicy(e))
    return JSON.stringify(back) === JSON.stringify(ps)
  }), fuzzParams(200))
  await fc.assert(fc.property(requestFrames(fc.array(policy, { maxLength: 4 }).map(encodePolicies)), frame => {
    const entries = ownErrorOr('decodePolicies', () => decodePolicies(frame))
    if (entries === undefined) return true
    // checkPolicy judges each entry and says why it refuses one; it never throws.
    return entries.length <= MAX_POLICIES && entries.every(e => { const c = checkPolicy(e); return typeof c === 'string' || /^[0-9a-f]{64}$/.test(c.image) })
  }), fuzzParams(400))
})

const fullRef = fc.oneof(hex64.map(h => `sha256:${h}`), manifestCidArb.map(c => c.toString()))
const progress: fc.Arbitrary<ImageProgress> = fc.record({
  ref: fullRef,
  image: fc.option(hex64.map(h => `sha256:${h}`), { nil: undefined }),
  state: fc.constantFrom('resolving' as const, 'fetching' as const, 'verifying' as const, 'available' as const, 'failed' as const),
  size: fc.option(fc.nat(), { nil: undefined }),
  bytes: fc.record({ local: fc.nat(), peer: fc.nat(), origin: fc.nat() }),
  error: fc.option(fc.string({ maxLength: 30 }), { nil: undefined })
}).map(p => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as unknown as ImageProgress)

t.test('preheat requests and answers', async () => {
  const validReq = fc.array(fullRef, { minLength: 1, maxLength: 5 }).map(encodePreheatRequest)
  await fc.assert(fc.property(requestFrames(validReq), frame => {
    const refs = ownErrorOr('decodePreheatRequest', () => decodePreheatRequest(frame))
    return refs === undefined || (refs.length >= 1 && refs.length <= MAX_PREHEAT_REFS && same(encodePreheatRequest(refs), encodePreheatRequest(decodePreheatRequest(encodePreheatRequest(refs)))))
  }), fuzzParams(400))

  const validRes: fc.Arbitrary<PreheatResponse> = fc.oneof(
    fc.record({ type: fc.constant('progress' as const), images: fc.array(progress, { minLength: 1, maxLength: 3 }), done: fc.boolean() }),
    fc.record({ type: fc.constant('error' as const), reason, message: errorMessage })
  )
  await fc.assert(fc.property(validRes, msg => {
    const n = msg.type === 'progress' ? msg.images.length : 1
    return same(encodePreheatResponse(decodePreheatResponse(encodePreheatResponse(msg), n)), encodePreheatResponse(msg))
  }), fuzzParams(200))
  await fc.assert(fc.property(requestFrames(validRes.map(encodePreheatResponse)), fc.integer({ min: 1, max: 3 }), (frame, n) => {
    const msg = ownErrorOr('decodePreheatResponse', () => decodePreheatResponse(frame, n))
    return msg === undefined || msg.type === 'error' || msg.images.length === n
  }), fuzzParams(400))
})

t.test('dag-cbor requests with values that are not plain data', async t => {
  // A map whose `toString` is not a function makes String(v) throw a TypeError: decoders must not use it on peer data.
  const trap = { toString: 1, valueOf: 1 }
  const frames = [
    dagCbor.encode({ cid: trap }),
    dagCbor.encode({ manifest: trap }),
    dagCbor.encode({ images: [{ ref: 'x', state: trap, bytes: { local: 0, peer: 0, origin: 0 } }], done: true })
  ]
  t.throws(() => decodeManifestRequest(frames[0]), ProtocolError)
  t.throws(() => decodeHaveRequest(frames[1]), ProtocolError)
  t.throws(() => decodePreheatResponse(frames[2], 1), ProtocolError)
  await fc.assert(fc.property(dagValue, v => {
    const frame = tryEncode({ cid: v, manifest: v, refs: v, images: [v], done: true })
    if (frame == null) return true
    for (const decode of [decodeManifestRequest, decodeHaveRequest, decodeChunksRequest, decodePreheatRequest, decodePolicies, decodeHoldsRequest]) ownErrorOr(decode.name, () => decode(frame))
    ownErrorOr('decodePreheatResponse', () => decodePreheatResponse(frame, 1))
    return true
  }), fuzzParams(400))
})
