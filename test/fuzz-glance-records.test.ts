import fc from 'fast-check'
import t from 'tap'
import { checkGlanceImage, checkedAgainst, type GlanceImage } from '../src/origin/glance-origin.js'
import { fuzzParams, jsonFrames, ownErrorOr, ownErrorOrAsync, piecesOf } from './helpers/fuzz.js'

/*
 * Fuzzing of Glance's image records (`GET /v2/images/{id}`): the check returns a record whose every
 * field has its declared type, or an OriginError; the size and hash check of the bytes run over a
 * record that passed never fails with a TypeError.
 */

const hexChar = fc.constantFrom(...'0123456789abcdef')
// ---------------------------------------------------------------------------------------------
// Glance image records

const ID = '6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b'
const GLANCE_KEYS = ['id', 'name', 'status', 'size', 'checksum', 'os_hash_algo', 'os_hash_value', 'disk_format', 'container_format', 'visibility', 'owner']
const textOrNull = (a: fc.Arbitrary<string>): fc.Arbitrary<string | null> => fc.option(a, { nil: null })
const glanceRecord = fc.record({
  id: fc.constant(ID),
  name: textOrNull(fc.string({ maxLength: 20 })),
  status: fc.constantFrom('active', 'queued', 'saving', 'killed', 'deleted'),
  size: fc.option(fc.nat(1000), { nil: null }),
  checksum: textOrNull(fc.string({ unit: hexChar, minLength: 32, maxLength: 32 })),
  os_hash_algo: textOrNull(fc.constantFrom('sha512', 'sha256', 'md5', 'sha3-256', 'no-such-hash')),
  os_hash_value: textOrNull(fc.string({ unit: hexChar, maxLength: 128 })),
  disk_format: textOrNull(fc.constantFrom('qcow2', 'raw', 'aki', 'ari')),
  container_format: textOrNull(fc.constantFrom('bare', 'ovf')),
  visibility: fc.constantFrom('public', 'private', 'shared'),
  owner: textOrNull(fc.string({ maxLength: 8 }))
}, { requiredKeys: ['id', 'status'] })

function glanceHolds (g: GlanceImage): boolean {
  const text = (v: unknown): boolean => v === null || typeof v === 'string'
  return g.id === ID && typeof g.status === 'string' && (g.size === null || (Number.isSafeInteger(g.size) && g.size >= 0)) &&
    text(g.name) && text(g.checksum) && text(g.os_hash_algo) && text(g.os_hash_value) && text(g.disk_format) && text(g.container_format) &&
    (g.visibility === undefined || typeof g.visibility === 'string') && (g.owner === undefined || text(g.owner))
}

t.test('Glance image records: checked fields, and the bytes check over them never fails with a TypeError', async t => {
  await fc.assert(fc.asyncProperty(jsonFrames(glanceRecord, GLANCE_KEYS), fc.uint8Array({ maxLength: 64 }), async (frame, bytes) => {
    const image = ownErrorOr('checkGlanceImage', () => {
      let v: unknown
      try { v = JSON.parse(Buffer.from(frame).toString('utf8')) } catch { return undefined }
      return checkGlanceImage(v, 'fuzz', ID)
    })
    if (image === undefined) return true
    if (!glanceHolds(image)) return false
    // What a fetch then does with the record: pass bytes through, checked against its size and hash.
    await ownErrorOrAsync('checkedAgainst', async () => { for await (const _ of checkedAgainst(image, piecesOf(bytes, [7]))) { /* drained */ } })
    return true
  }), fuzzParams(400))
  // Each field of the wrong type is refused, not carried on to code that calls string methods on it.
  for (const k of ['checksum', 'os_hash_value', 'os_hash_algo', 'name', 'disk_format']) {
    t.throws(() => checkGlanceImage({ id: ID, status: 'active', size: 1, [k]: 5 }, 'test', ID), { code: 'IMGSWARM_ORIGIN' }, `${k} as a number`)
  }
  t.throws(() => checkGlanceImage({ id: ID, status: 'active', size: '10' }, 'test', ID), { code: 'IMGSWARM_ORIGIN' }, 'size as text')
  t.same(checkGlanceImage({ id: ID, status: 'queued' }, 'test', ID), { id: ID, status: 'queued', size: null, name: null, checksum: null, os_hash_algo: null, os_hash_value: null, disk_format: null, container_format: null }, 'missing fields are null')
})
