import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import fc from 'fast-check'
import { ImgswarmError, errorClasses } from '../../src/errors.js'

/*
 * Shared pieces of the fuzz tests (test/fuzz-*.test.ts): run bounds, the "own error or a valid value"
 * check, mutations of valid encodings, and arbitrary dag-cbor values.
 *
 * Every property is bounded by a number of runs and a time budget, so the whole set stays well under a
 * minute on a busy machine. `FUZZ_RUNS=20000 FUZZ_SEED=42` runs longer and reproducibly; fast-check
 * prints the seed and path of any failure, which FUZZ_SEED replays.
 */

const envInt = (name: string): number | undefined => {
  const v = process.env[name]
  return v != null && v !== '' ? Number.parseInt(v, 10) : undefined
}

const RUNS = envInt('FUZZ_RUNS')
const SEED = envInt('FUZZ_SEED')
/** Per property. When FUZZ_RUNS asks for a long run, only an explicit FUZZ_TIME_MS cuts it short. */
const TIME_MS = envInt('FUZZ_TIME_MS') ?? (RUNS != null ? undefined : 2500)
/** Per test file (each runs in its own process): on a loaded machine the later properties get less time. */
const FILE_BUDGET_MS = 15_000
const started = Date.now()

/** fast-check parameters: `runs` by default (a property's own cost decides it), FUZZ_RUNS to override. */
export function fuzzParams (runs: number): fc.Parameters<unknown> {
  const limit = TIME_MS == null || envInt('FUZZ_TIME_MS') != null ? TIME_MS : Math.max(250, Math.min(TIME_MS, started + FILE_BUDGET_MS - Date.now()))
  return {
    numRuns: RUNS ?? runs,
    ...(SEED != null ? { seed: SEED } : {}),
    ...(limit != null ? { interruptAfterTimeLimit: limit } : {})
  }
}

const OWN_CODES = new Set<string>(errorClasses.map(c => c.code))

/** Whether `err` is one of imgswarm's own errors, with a documented code. */
export function isOwnError (err: unknown): err is ImgswarmError {
  return err instanceof ImgswarmError && OWN_CODES.has(err.code)
}

/** Rethrows anything but one of our own errors, so that fast-check shrinks and reports it. */
function ownOnly (err: unknown, what: string): never | undefined {
  if (isOwnError(err)) return undefined
  const e = err as Error
  throw new Error(`${what} threw ${e?.name ?? typeof err} (${e?.message ?? String(err)}), not one of imgswarm's errors`, { cause: err })
}

/** `fn()`'s value, or undefined when it threw one of our errors; any other throw fails the property. */
export function ownErrorOr<T> (what: string, fn: () => T): T | undefined {
  try {
    return fn()
  } catch (err) {
    return ownOnly(err, what)
  }
}

/** {@link ownErrorOr} for async work. */
export async function ownErrorOrAsync<T> (what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn()
  } catch (err) {
    return ownOnly(err, what)
  }
}

/** One change to a valid encoding. Positions are taken modulo the length, so any op fits any input. */
export type Mutation =
  | { op: 'flip', at: number, bit: number }
  | { op: 'set', at: number, byte: number }
  | { op: 'truncate', at: number }
  | { op: 'extend', bytes: Uint8Array }
  | { op: 'insert', at: number, bytes: Uint8Array }
  | { op: 'delete', at: number, count: number }
  | { op: 'varint', at: number, value: number }

const byteEdge = fc.oneof(fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0xff), fc.integer({ min: 0, max: 255 }))
/** Lengths a hostile peer would declare: small, at the bounds we use, and absurd. */
const declaredLength = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.constantFrom(127, 128, 16383, 16384, 2 ** 20, 2 ** 20 + 1, 2 ** 22 + 1024, 2 ** 26, 2 ** 28, 2 ** 31, 2 ** 32, 2 ** 49, 2 ** 53 - 1),
  fc.integer({ min: 0, max: 2 ** 53 - 1 })
)

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: byteEdge }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('varint' as const), at: fc.nat(), value: declaredLength })
)

/** 1 to 3 mutations. */
export const mutations = fc.array(mutation, { minLength: 1, maxLength: 3 })

/** The unsigned LEB128 varint of a safe integer (what every length prefix here uses). */
export function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 128) { out.push((n % 128) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return Uint8Array.from(out)
}

/** `bytes` with the mutations applied in turn; never changes `bytes` itself. */
export function mutate (bytes: Uint8Array, ops: readonly Mutation[]): Uint8Array {
  let b: Uint8Array = Uint8Array.from(bytes)
  for (const m of ops) {
    const at = b.length === 0 ? 0 : ('at' in m ? m.at % b.length : 0)
    switch (m.op) {
      case 'flip': if (b.length > 0) b[at] ^= 1 << m.bit; break
      case 'set': if (b.length > 0) b[at] = m.byte; break
      case 'truncate': b = b.subarray(0, at); break
      case 'extend': b = concat(b, m.bytes); break
      case 'insert': b = concat(b.subarray(0, at), m.bytes, b.subarray(at)); break
      case 'delete': b = concat(b.subarray(0, at), b.subarray(at + m.count)); break
      // Overwrites a length prefix (or anything) with a varint, keeping what follows it.
      case 'varint': {
        const v = varint(m.value)
        b = concat(b.subarray(0, at), v, b.subarray(Math.min(b.length, at + v.length)))
        break
      }
    }
  }
  return b
}

export function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.length }
  return out
}

/** Bytes as an async source in pieces of the given sizes (cycled), as a socket or file delivers them. */
export async function * piecesOf (bytes: Uint8Array, sizes: readonly number[] = [1 << 16]): AsyncGenerator<Uint8Array> {
  let k = 0
  for (let off = 0; off < bytes.length; k++) {
    const n = Math.max(1, sizes[k % sizes.length])
    yield bytes.subarray(off, off + n)
    off += n
  }
}

/**
 * Map keys: the field names our decoders look up, plus names that break code which assumes plain
 * data (`toString`/`valueOf` make `String(v)` throw a TypeError; `__proto__`, `constructor`).
 */
export const FIELD_NAMES = [
  'digest', 'cid', 'manifest', 'digests', 'refs', 'images', 'done', 'error', 'reason', 'message', 'policies',
  'image', 'min', 'ts', 'by', 'ref', 'state', 'size', 'bytes', 'local', 'peer', 'origin',
  'v', 'chunker', 'alg', 'avg', 'max', 'chunks', 'sha256', 'len', 'meta', 'type', 'name', 'format',
  'version', 'roots', 'imgswarmBundle', 'publicKey', 'signature',
  'toString', 'valueOf', '__proto__', 'constructor', 'then', 'length'
]

const sha256Cid = (code: number, digest: Uint8Array, version: 0 | 1): CID => version === 0
  ? CID.createV0(Digest.create(0x12, digest) as any)
  : CID.createV1(code, Digest.create(0x12, digest))

/** CIDs of several kinds: manifest-like (dag-cbor), chunk-like (raw), v0, other codecs. */
export const anyCid: fc.Arbitrary<CID> = fc.tuple(
  fc.constantFrom(0x71, 0x55, 0x70, 0x0129),
  fc.uint8Array({ minLength: 32, maxLength: 32 }),
  fc.constantFrom<0 | 1>(0, 1, 1, 1)
).map(([code, d, v]) => sha256Cid(code, d, v))

/** Any value dag-cbor can encode, with keys our decoders look at. */
export const dagValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>(tie => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
    fc.constantFrom(0, 1, -1, 2 ** 53 - 1, 2 ** 53, 2 ** 64 - 1, 0.5, 1e300),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ maxLength: 80 }),
    // Maps on which String() throws: decoders must not put peer data through it.
    fc.constantFrom({ toString: 1 }, { toString: null, valueOf: 'x' }),
    fc.constantFrom('machine', 'fastcdc-gear32-nc2', 'busy', 'available', 'sha256:' + '0'.repeat(64)),
    fc.uint8Array({ maxLength: 80 }),
    fc.uint8Array({ minLength: 32, maxLength: 32 }),
    anyCid,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.oneof(fc.constantFrom(...FIELD_NAMES), fc.string({ maxLength: 8 })), tie('value'), { maxKeys: 6 })
  )
})).value

/** A map at the top level (what every request and response decoder starts from). */
export const dagMap = fc.dictionary(fc.oneof(fc.constantFrom(...FIELD_NAMES), fc.string({ maxLength: 8 })), dagValue, { maxKeys: 6 })

/** A value as the UTF-8 JSON a peer or a server would send. */
export const json = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v) ?? 'null', 'utf8')

/** Values of the wrong type where a decoder expects another: what a hostile or broken sender writes. */
export const hostile = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(null, -1, 0, 1.5, 2 ** 53, 1e308, -0, '', 'x'.repeat(300), [], {}, { toString: 1 }, { toString: null, valueOf: 'x' }, ['a'], '0'.repeat(64))
)

/** Bytes a sender might write where a JSON object of `valid` is expected: noise, hostile objects, valid ones overwritten or mutated. */
export function jsonFrames (valid: fc.Arbitrary<Record<string, unknown>>, keys: string[]): fc.Arbitrary<Uint8Array> {
  const fieldKeys = fc.constantFrom(...keys, '__proto__', 'constructor', 'toString')
  return fc.oneof(
    fc.uint8Array({ maxLength: 120 }),
    fc.jsonValue({ maxDepth: 3 }).map(json),
    fc.dictionary(fieldKeys, hostile, { maxKeys: 6 }).map(json),
    fc.tuple(valid, fc.dictionary(fieldKeys, hostile, { maxKeys: 3 })).map(([v, over]) => json({ ...v, ...over })),
    fc.tuple(valid, mutations).map(([v, ops]) => mutate(json(v), ops)),
    valid.map(json)
  )
}
