import fc from 'fast-check'
import t from 'tap'
import { decodeAliasAnswer, decodeAliasRequest } from '../src/peer/glance-alias-protocol.js'
import { MAX_NAME_LENGTH, MAX_SUMMARY_IMAGES, MAX_SUMMARY_JOBS, checkSummary, type NodeSummary } from '../src/ui/node-summary.js'
import { decodeSummary } from '../src/ui/summary-protocol.js'
import { fuzzParams, hostile, json as enc, jsonFrames, ownErrorOr } from './helpers/fuzz.js'

/*
 * Fuzzing of the JSON that peers send: glance-alias questions and answers, and the cluster page's
 * node summaries. A decoder returns a value of the declared types within its bounds, or throws one
 * of our errors; never a TypeError from a field of the wrong type.
 */

const hexChar = fc.constantFrom(...'0123456789abcdef')
const hex64 = fc.string({ unit: hexChar, minLength: 64, maxLength: 64 })
const HEX64 = /^[0-9a-f]{64}$/

// ---------------------------------------------------------------------------------------------
// glance-alias

const aliasAnswer = fc.record({
  hex: hex64,
  size: fc.nat(),
  osHashAlgo: fc.constantFrom('sha512', 'sha256', 'md5'),
  osHashValue: fc.string({ unit: hexChar, maxLength: 128 }),
  checksum: fc.string({ unit: hexChar, maxLength: 32 })
}, { requiredKeys: ['hex', 'size'] })

t.test('glance-alias questions and answers', async () => {
  const question = fc.record({ id: fc.uuid(), endpoint: fc.webUrl() })
  await fc.assert(fc.property(jsonFrames(question, ['id', 'endpoint']), frame => {
    const q = ownErrorOr('decodeAliasRequest', () => decodeAliasRequest(frame))
    return q === undefined || (typeof q.id === 'string' && typeof q.endpoint === 'string')
  }), fuzzParams(400))

  await fc.assert(fc.property(jsonFrames(aliasAnswer, ['hex', 'size', 'osHashAlgo', 'osHashValue', 'checksum']), frame => {
    const c = ownErrorOr('decodeAliasAnswer', () => decodeAliasAnswer(frame, 'peer-a'))
    if (c === undefined) return true
    const optional = (v: unknown): boolean => v === undefined || typeof v === 'string'
    return c.peer === 'peer-a' && HEX64.test(c.hex) && Number.isSafeInteger(c.size) && c.size >= 0 &&
      optional(c.osHashAlgo) && optional(c.osHashValue) && optional(c.checksum)
  }), fuzzParams(400))

  // A well-formed answer comes back as it was sent.
  await fc.assert(fc.property(aliasAnswer, a => {
    const c = decodeAliasAnswer(enc(a), 'p')
    return c !== undefined && JSON.stringify({ ...a, peer: 'p' }) === JSON.stringify({ ...a, ...c })
  }), fuzzParams(200))
})

// ---------------------------------------------------------------------------------------------
// node summaries (the cluster page)

const sources = fc.record({ local: fc.nat(), peer: fc.nat(), origin: fc.nat() })
const job = fc.record({
  ref: fc.string({ maxLength: 80 }),
  image: fc.string({ maxLength: 80 }),
  name: fc.string({ maxLength: 40 }),
  state: fc.constantFrom('fetching', 'verifying', 'available', 'failed'),
  size: fc.nat(),
  percent: fc.double({ min: 0, max: 100, noNaN: true }),
  bytes: sources,
  rate: sources,
  etaSeconds: fc.nat()
}, { requiredKeys: ['ref', 'state', 'bytes', 'rate'] })
const SUMMARY_KEYS = ['name', 'version', 'uptimeSeconds', 'store', 'peers', 'held', 'heldOmitted', 'jobs', 'rate']
const summaryOf = (jobs: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<Record<string, unknown>> => fc.record({
  name: fc.string({ maxLength: 80 }),
  peerId: fc.string({ maxLength: 10 }),
  version: fc.string({ maxLength: 40 }),
  uptimeSeconds: fc.nat(),
  store: fc.record({ used: fc.nat(), cap: fc.option(fc.nat(), { nil: null }), images: fc.nat() }),
  peers: fc.nat(),
  held: fc.array(hex64, { maxLength: 6 }),
  heldOmitted: fc.nat(),
  jobs: fc.array(jobs, { maxLength: 4 }),
  rate: fc.record({ peer: fc.nat(), origin: fc.nat(), served: fc.nat() })
})
const validSummary = summaryOf(job)
/** Summaries with some jobs' fields of the wrong type. */
const summary = summaryOf(fc.oneof(job, fc.tuple(job, fc.dictionary(fc.constantFrom('ref', 'image', 'name', 'state', 'size', 'percent', 'bytes', 'rate', 'etaSeconds'), hostile, { maxKeys: 2 })).map(([j, over]) => ({ ...j, ...over }))))

function summaryHolds (s: NodeSummary): boolean {
  const n = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0
  const nOpt = (v: unknown): boolean => v === undefined || n(v)
  const src = (r: Record<string, number>): boolean => n(r.local) && n(r.peer) && n(r.origin)
  return s.peerId === 'peer-b' && s.name.length <= MAX_NAME_LENGTH && s.version.length <= 32 &&
    n(s.uptimeSeconds) && n(s.store.used) && (s.store.cap === null || n(s.store.cap)) && n(s.store.images) && n(s.peers) &&
    s.held.length <= MAX_SUMMARY_IMAGES && s.held.every(h => HEX64.test(h)) && n(s.heldOmitted) &&
    s.jobs.length <= MAX_SUMMARY_JOBS && s.jobs.every(j => typeof j.ref === 'string' && j.ref.length <= 200 && typeof j.state === 'string' && j.state.length <= 16 &&
      (j.image === undefined || (typeof j.image === 'string' && j.image.length <= 80)) && (j.name === undefined || (typeof j.name === 'string' && j.name.length <= 200)) &&
      nOpt(j.size) && nOpt(j.percent) && nOpt(j.etaSeconds) && src(j.bytes) && src(j.rate)) &&
    n(s.rate.peer) && n(s.rate.origin) && n(s.rate.served)
}

t.test('node summaries from peers', async () => {
  await fc.assert(fc.property(jsonFrames(summary, SUMMARY_KEYS), frame => {
    const s = ownErrorOr('decodeSummary', () => decodeSummary(frame, 'peer-b'))
    return s === undefined || summaryHolds(s)
  }), fuzzParams(400))
  // The check under the decoder fails only with its own message, never a TypeError that the
  // decoder's wrapping would hide.
  await fc.assert(fc.property(fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.tuple(summary, fc.dictionary(fc.constantFrom(...SUMMARY_KEYS), hostile, { maxKeys: 2 })).map(([s, o]) => JSON.parse(JSON.stringify({ ...s, ...o })))), v => {
    try {
      return summaryHolds(checkSummary(v, 'peer-b'))
    } catch (err) {
      if ((err as Error).constructor !== Error) throw err
      return true
    }
  }), fuzzParams(400))
  // A well-formed summary is taken, whatever its lengths (names are cut, not refused).
  await fc.assert(fc.property(validSummary, s => summaryHolds(decodeSummary(enc(s), 'peer-b'))), fuzzParams(200))
})
