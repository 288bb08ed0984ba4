import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { formatApiAddress, parseApiAddress } from '../src/api/address.js'
import { errorFromBody } from '../src/api/http-errors.js'
import { parseRange } from '../src/api/range.js'
import { manifestCid } from '../src/chunks/manifest.js'
import { MIN_PREFIX_DIGITS, digestRef, parseRef } from '../src/chunks/ref.js'
import { configKeys, loadConfig } from '../src/node/config.js'
import type { NodeConfig } from '../src/node/options.js'
import { UsageError } from '../src/errors.js'
import { parseContentRange } from '../src/origin/content-range.js'
import { fileOrigin } from '../src/origin/file-origin.js'
import { httpOrigin } from '../src/origin/http-origin.js'
import type { Origin } from '../src/origin/origin.js'
import { s3Origin } from '../src/origin/s3-origin.js'
import { privateNetwork } from '../src/peer/pnet.js'
import { parseNodeChoice } from '../src/swarm/preheat.js'
import { MAX_POLICIES, REPLICAS_FILE, ReplicaPolicies, checkPolicy } from '../src/swarm/replica-policies.js'
import { LOG_LEVELS } from '../src/util/log.js'
import { parseDuration, parseSize, parseSizeLimit } from '../src/util/units.js'
import { fuzzParams, isOwnError, mutate, mutations, ownErrorOr, ownErrorOrAsync } from './helpers/fuzz.js'

/*
 * Fuzzing of the text a node reads from outside: refs, HTTP ranges, sizes and durations, API
 * addresses, the config file and IMGSWARM_* variables, the replica policy file, the swarm key,
 * origin URLs and the Content-Range an origin answers. Each parser returns a value within its
 * documented bounds or throws one of our errors.
 */

const hexChar = fc.constantFrom(...'0123456789abcdefABCDEF')
const hexString = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: hexChar, minLength: min, maxLength: max })
const digits = fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 25 })
/** Text close to what a parser expects: fragments of the grammar glued together. */
const near = (parts: string[]): fc.Arbitrary<string> => fc.array(fc.oneof(fc.constantFrom(...parts), digits, fc.string({ maxLength: 4 })), { maxLength: 6 }).map(a => a.join(''))

t.test('refs', async () => {
  await fc.assert(fc.property(fc.oneof(
    fc.string({ maxLength: 80 }),
    hexString(0, 70).map(h => `sha256:${h}`),
    hexString(0, 70),
    fc.uint8Array({ minLength: 1, maxLength: 40 }).map(b => manifestCid(b).toString()),
    fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.nat(), fc.string({ minLength: 1, maxLength: 1 })).map(([b, i, c]) => { const s = manifestCid(b).toString(); const k = i % s.length; return s.slice(0, k) + c + s.slice(k + 1) })
  ), text => {
    const ref = ownErrorOr('parseRef', () => parseRef(text))
    if (ref === undefined) return true
    if (ref.kind === 'digest') return /^[0-9a-f]{64}$/.test(ref.hex) && parseRef(digestRef(ref.hex)).kind === 'digest'
    if (ref.kind === 'prefix') return /^[0-9a-f]+$/.test(ref.hex) && ref.hex.length >= MIN_PREFIX_DIGITS && ref.hex.length < 64
    if (ref.kind === 'glance') return /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/.test(ref.id)
    const again = parseRef(ref.cid.toString())
    return again.kind === 'manifest' && again.cid.equals(ref.cid)
  }), fuzzParams(600))
})

t.test('HTTP Range headers', async () => {
  const header = fc.oneof(
    fc.tuple(fc.option(digits, { nil: '' }), fc.option(digits, { nil: '' })).map(([a, b]) => `bytes=${a}-${b}`),
    near(['bytes=', '-', ',', ' ', 'items=', '0', '1e3']),
    fc.string({ maxLength: 30 })
  )
  await fc.assert(fc.property(header, fc.oneof(fc.nat({ max: 5000 }), fc.constant(0), fc.nat()), (h, size) => {
    const r = parseRange(h, size)
    if (r === undefined || r === 'unsatisfiable') return true
    return Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.start <= r.end && r.end < size
  }), fuzzParams(800))
  // Every satisfiable range written out comes back as it was.
  await fc.assert(fc.property(fc.nat({ max: 1e9 }).chain(size => fc.tuple(fc.constant(size + 1), fc.nat({ max: size }), fc.nat({ max: size }))), ([size, a, b]) => {
    const [start, end] = a <= b ? [a, b] : [b, a]
    const r = parseRange(`bytes=${start}-${end}`, size)
    return typeof r === 'object' && r.start === start && r.end === end
  }), fuzzParams(300))
})

t.test('Content-Range from origins', async t => {
  const value = fc.oneof(
    fc.tuple(digits, digits, fc.oneof(digits, fc.constant('*'))).map(([a, b, s]) => `bytes ${a}-${b}/${s}`),
    fc.oneof(digits, fc.constant('*')).map(s => `bytes */${s}`),
    near(['bytes ', '-', '/', '*', ' ']),
    fc.string({ maxLength: 30 })
  )
  await fc.assert(fc.property(value, v => {
    const cr = parseContentRange(v)
    if (cr === undefined) return true
    return (cr.start === -1 || (Number.isSafeInteger(cr.start) && cr.start >= 0)) && (cr.size === undefined || (Number.isSafeInteger(cr.size) && cr.start < cr.size))
  }), fuzzParams(800))
  t.same(parseContentRange('bytes 10-19/100'), { start: 10, size: 100 })
  t.same(parseContentRange('bytes */100'), { start: -1, size: 100 })
  // A size past 2^53 used to come back as an inexact float, and a range outside the size as given.
  t.equal(parseContentRange('bytes 0-0/99999999999999999999999'), undefined)
  t.equal(parseContentRange('bytes 5-2/100'), undefined)
  t.equal(parseContentRange('bytes 0-100/100'), undefined)
})

t.test('sizes, size limits and durations', async () => {
  const text = fc.oneof(
    near(['1', '0', '.', '5', 'e', 'e400', 'KiB', 'MiB', 'GiB', 'TiB', 'K', 'G', 'T', 'b', '%', ' ', 'constructor', 'tostring', 'ms', 's', 'm', 'h', 'd']),
    fc.tuple(digits, fc.constantFrom('', '%', 'kib', 'GB', ' t', 'constructor', '__proto__', 'ms', 'h', 'd', 's', 'valueof')).map(([n, u]) => n + u),
    fc.string({ maxLength: 20 })
  )
  await fc.assert(fc.property(text, s => {
    const size = ownErrorOr('parseSize', () => parseSize(s))
    const limit = ownErrorOr('parseSizeLimit', () => parseSizeLimit(s))
    const ms = ownErrorOr('parseDuration', () => parseDuration(s))
    return (size === undefined || (Number.isSafeInteger(size) && size > 0)) &&
      (limit === undefined || ('bytes' in limit ? Number.isSafeInteger(limit.bytes) && limit.bytes > 0 : limit.percent > 0 && limit.percent <= 100)) &&
      (ms === undefined || (Number.isSafeInteger(ms) && ms > 0))
  }), fuzzParams(800))
})

t.test('API addresses', async () => {
  const text = fc.oneof(
    near(['http://', 'unix:', '[', ']', '::1', ':', '127.0.0.1', '/', 'localhost', '65535', '65536', '0']),
    fc.string({ maxLength: 30 })
  )
  await fc.assert(fc.property(text, s => {
    const a = ownErrorOr('parseApiAddress', () => parseApiAddress(s))
    if (a === undefined) return true
    if (a.kind === 'tcp' && !(Number.isInteger(a.port) && a.port >= 0 && a.port <= 65535 && !/[[\]]/.test(a.host))) return false
    // What an address prints as parses back to the same address.
    return JSON.stringify(parseApiAddress(formatApiAddress(a))) === JSON.stringify(a)
  }), fuzzParams(800))
})

t.test('preheat node choices and error bodies from the API', async t => {
  await fc.assert(fc.property(fc.oneof(fc.jsonValue(), fc.array(fc.oneof(fc.string(), fc.integer())), fc.constant({ toString: 1 })), v => {
    const c = ownErrorOr('parseNodeChoice', () => parseNodeChoice(v))
    return c === undefined || c.kind === 'all' || (c.kind === 'count' ? c.n >= 1 : c.ids.length >= 1)
  }), fuzzParams(300))
  const hostile = fc.oneof(fc.jsonValue(), fc.constantFrom({ toString: 1 }, { toString: null, valueOf: 1 }))
  await fc.assert(fc.property(fc.oneof(fc.jsonValue(), fc.record({ error: fc.record({ code: hostile, message: hostile }, { requiredKeys: [] }) })), fc.integer({ min: 100, max: 599 }), (body, status) => {
    const err = errorFromBody(body, status)
    return err instanceof Error && typeof err.message === 'string' && typeof (err as { code?: unknown }).code === 'string'
  }), fuzzParams(400))
  // A message or code that is not a string used to make `new Error(v)` throw a TypeError.
  t.equal(errorFromBody({ error: { code: 'IMGSWARM_USAGE', message: { toString: 1 } } }, 400).message, 'the daemon answered HTTP 400')
  t.equal((errorFromBody({ error: { code: { toString: 1 }, message: 'm' } }, 500) as UsageError).code, 'IMGSWARM_API')
})

// ---------------------------------------------------------------------------------------------
// files a node reads: its config, its replica policies, the swarm key

const CONFIG_KEYS = configKeys()
/** JSON values, with the ones that break `String(v)` and plausible ones for each key. */
const configValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom({ toString: 1 }, { toString: 'x', valueOf: 'y' }, [{ toString: 1 }], '90%', '0.5', '10GiB', '80%', 'debug', '30s', '5m', '1.5h', '100ms', 1e308, -1, 0, 86_400_001)
)

function configHolds (c: NodeConfig): boolean {
  const strings = (v: unknown): boolean => Array.isArray(v) && v.every(s => typeof s === 'string')
  const ms = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 86_400_000
  return strings(c.listen) && c.listen.length > 0 && strings(c.bootstrap) && strings(c.allowPeers) && typeof c.api === 'string' &&
    (LOG_LEVELS as readonly string[]).includes(c.logLevel) && typeof c.mdns === 'boolean' &&
    c.highWater! > 0 && c.highWater! <= 1 && c.lowWater! > 0 && c.lowWater! < c.highWater! &&
    (c.maxSize === undefined || ('bytes' in c.maxSize ? Number.isSafeInteger(c.maxSize.bytes) && c.maxSize.bytes > 0 : c.maxSize.percent > 0 && c.maxSize.percent <= 100)) &&
    ms(c.evictionGraceMs) && ms(c.replicaIntervalMs)
}

let dir: string
t.before(async () => { dir = await mkdtemp(join(tmpdir(), 'imgswarm-fuzz-')) })
t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })

t.test('the config file and IMGSWARM_* variables', async () => {
  const valid = JSON.stringify({ listen: ['/ip4/0.0.0.0/tcp/4001'], api: '127.0.0.1:7480', maxSize: '10GiB', highWater: 0.9, lowWater: '80%', evictionGraceMs: 1000, logLevel: 'info' })
  const file = fc.oneof(
    fc.dictionary(fc.oneof(fc.constantFrom(...CONFIG_KEYS), fc.constantFrom('__proto__', 'toString', 'bogus')), configValue, { maxKeys: 5 }).map(o => JSON.stringify(o)),
    // A key set to an object with its own toString: JSON can say that, JSON.stringify of a literal cannot.
    fc.tuple(fc.constantFrom(...CONFIG_KEYS), fc.constantFrom('{"toString":1}', '{"toString":"x","valueOf":"y"}', '[{"toString":1}]')).map(([k, v]) => `{"${k}":${v}}`),
    fc.tuple(fc.constant(valid), mutations).map(([v, ops]) => Buffer.from(mutate(Buffer.from(v), ops)).toString('utf8')),
    fc.string({ maxLength: 40 })
  )
  const env = fc.dictionary(fc.constantFrom('IMGSWARM_LISTEN', 'IMGSWARM_MDNS', 'IMGSWARM_MAX_SIZE', 'IMGSWARM_HIGH_WATER', 'IMGSWARM_LOW_WATER', 'IMGSWARM_EVICTION_GRACE', 'IMGSWARM_EVICTION_GRACE_MS', 'IMGSWARM_LOG_LEVEL', 'IMGSWARM_REPLICA_INTERVAL', 'IMGSWARM_REPLICA_INTERVAL_MS'),
    fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('0.95', '50%', '1e400', '', ' , ,', 'NaN', 'Infinity', '30s', '0', '2d', '1')), { maxKeys: 3 })
  const path = join(dir, 'config.json')
  await fc.assert(fc.asyncProperty(file, env, async (text, vars) => {
    await writeFile(path, text)
    const c = await ownErrorOrAsync('loadConfig', async () => await loadConfig({ config: path }, vars, dir, { onWarning: () => {} }))
    return c === undefined || configHolds(c)
  }), fuzzParams(300))
})

t.test('config regressions: values whose String() throws are a UsageError', async t => {
  const path = join(dir, 'regression.json')
  for (const key of ['maxSize', 'highWater', 'lowWater', 'evictionGrace', 'replicaInterval', 'evictionGraceMs', 'replicaIntervalMs', 'maxUploadRate']) {
    await writeFile(path, `{"${key}":{"toString":1}}`)
    await t.rejects(loadConfig({ config: path }, {}, dir, { onWarning: () => {} }), UsageError, key)
  }
  // Found by the property above: an empty list left the node with nowhere to listen.
  await writeFile(path, '{"listen":[]}')
  await t.rejects(loadConfig({ config: path }, {}, dir, { onWarning: () => {} }), { name: 'UsageError', message: /listen .*must name at least one address/ }, 'listen: []')
})

t.test('the replica policy file', async () => {
  const entry = fc.oneof(
    fc.record({ image: hexString(64, 64).map(h => h.toLowerCase()), min: fc.integer({ min: -1, max: 70 }), ts: fc.oneof(fc.nat(), fc.double()), by: fc.string({ maxLength: 130 }) }),
    fc.jsonValue({ maxDepth: 2 })
  )
  const text = fc.oneof(
    fc.array(entry, { maxLength: 5 }).map(policies => JSON.stringify({ version: 1, policies })),
    fc.tuple(fc.array(entry, { maxLength: 3 }), mutations).map(([policies, ops]) => Buffer.from(mutate(Buffer.from(JSON.stringify({ policies })), ops)).toString('utf8')),
    fc.constantFrom('null', '[]', '{"policies":null}', '{"policies":[null,{"toString":1}]}', '"x"'),
    fc.string({ maxLength: 30 })
  )
  let n = 0
  await fc.assert(fc.asyncProperty(text, async t => {
    const d = join(dir, `policies-${n++}`)
    await rm(d, { recursive: true, force: true })
    await import('node:fs/promises').then(async fs => { await fs.mkdir(d) })
    await writeFile(join(d, REPLICAS_FILE), t)
    const p = await ownErrorOrAsync('ReplicaPolicies.open', async () => await ReplicaPolicies.open(d, 'self'))
    if (p === undefined) return false // a damaged file is set aside, never an error
    const all = p.all()
    const files = await readdir(d)
    // Either every entry read was valid, or the damaged file was set aside.
    return all.length <= MAX_POLICIES && all.every(x => typeof checkPolicy(x, Infinity) !== 'string') && (files.includes(REPLICAS_FILE) || files.includes(`${REPLICAS_FILE}.bad`))
  }), fuzzParams(100))
})

t.test('swarm keys', async () => {
  const valid = `/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}\n`
  await fc.assert(fc.property(fc.oneof(
    fc.uint8Array({ maxLength: 100 }),
    fc.tuple(fc.constant(Buffer.from(valid)), mutations).map(([v, ops]) => mutate(v, ops)),
    hexString(0, 70).map(h => Buffer.from(`/key/swarm/psk/1.0.0/\n/base16/\n${h}`)),
    fc.string({ maxLength: 10 }).map(enc => Buffer.from(`/key/swarm/psk/1.0.0/\n/${enc}/\n${'00'.repeat(32)}`))
  ), key => {
    const f = ownErrorOr('privateNetwork', () => privateNetwork(key))
    return f === undefined || typeof f === 'function'
  }), fuzzParams(300))
})

// ---------------------------------------------------------------------------------------------
// origin URLs, as an operator (or a config file) gives them

t.test('origin URLs', async t => {
  const part = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('%', '%2F', '%2f', '%E0%A4%A', '%ZZ', '%00', '..', '@', ':', '?', '#', '[', ']', ' ', '\\', '//'))
  const param = fc.tuple(fc.constantFrom('timeoutMs', 'retries', 'retryDelayMs', 'maxManifestBytes', 'endpoint', 'region', 'forcePathStyle', 'partSize', 'uploadConcurrency', 'header', 'caFile', 'range', 'bogus'),
    fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('1', '0', 'true', '-1', '1e3', '99999999999999999999', 'http://x', 'x: y', '%ZZ')))
  const url = fc.tuple(fc.constantFrom('file://', 'file:///', 'http://', 'https://', 's3://', 'S3://', 'file://localhost/'), fc.array(part, { maxLength: 4 }), fc.array(param, { maxLength: 3 }))
    .map(([scheme, path, params]) => `${scheme}${path.join('')}${params.length > 0 ? '?' : ''}${params.map(([k, v]) => `${k}=${v}`).join('&')}`)
  const open: Record<string, (u: string) => Origin> = { file: fileOrigin, http: httpOrigin, s3: s3Origin }
  await fc.assert(fc.asyncProperty(url, async u => {
    const kind = u.startsWith('file') ? 'file' : u.toLowerCase().startsWith('s3') ? 's3' : 'http'
    const origin: Origin | undefined = ownErrorOr(`${kind}Origin`, () => open[kind](u))
    if (origin === undefined) return true
    await origin.close?.()
    return typeof origin.url === 'string'
  }), fuzzParams(300))
  // Percent-escapes that do not decode, and an encoded slash in a file path, are configuration errors.
  t.throws(() => s3Origin('s3://bucket/%E0%A4%A'), { code: 'IMGSWARM_ORIGIN_CONFIG' })
  t.throws(() => s3Origin('s3://bucket/p?region='), { code: 'IMGSWARM_ORIGIN_CONFIG' }, 'the SDK refuses an empty region')
  t.throws(() => fileOrigin('file:///srv/a%2Fb'), { code: 'IMGSWARM_ORIGIN_CONFIG' })
  t.throws(() => fileOrigin('file://localhost/%'), { code: 'IMGSWARM_ORIGIN_CONFIG' })
  t.throws(() => fileOrigin('file:///srv/a%00b'), { code: 'IMGSWARM_ORIGIN_CONFIG' })
})

t.test('isOwnError tells our errors from the rest', async t => {
  t.ok(isOwnError(new UsageError('x')))
  t.notOk(isOwnError(new TypeError('x')))
})
