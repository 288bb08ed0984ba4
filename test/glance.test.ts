/**
 * Glance as an origin, and the Glance-compatible endpoint, against a real glance-api (Debian's
 * package, started once for this file: ~10 s) and Debian's glanceclient (`glance image-download`,
 * which checks Glance's own os_hash_value as Nova does). Glance hashes with sha512 here, as a
 * stock Glance does.
 */
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { DigestMismatchError, OriginNotFoundError } from '../src/errors.js'
import { GlanceImages } from '../src/fetch/glance-images.js'
import { glanceAliasCid } from '../src/peer/glance-alias-protocol.js'
import { glanceOrigin } from '../src/origin/glance-origin.js'
import { openOrigin } from '../src/origin/open-origin.js'
import { LevelStore } from '../src/store/level-store.js'
import { formatApiAddress } from '../src/api/address.js'
import { runCli, tempDir } from './helpers/cli.js'
import { startDaemon, waitReady } from './helpers/daemons.js'
import { seededBytes } from './helpers/data.js'
import { PYTHON, TOKENS, call, glanceClientMissing, glanceMissing, startGlance, type Glance } from './helpers/glance.js'
import { collect, originSuite, sha256Hex } from './suites/origin.js'

const missing = glanceMissing()
t.test('against a real glance-api', { skip: missing ?? false }, async t => {
  const glance: Glance = await startGlance()
  t.teardown(async () => { await glance.stop() })
  t.comment(`glance-api started in ${glance.startupMs} ms`)

  originSuite(t, {
    name: 'glance',
    setup: async tuning => {
      const origin = glanceOrigin(`glance+${glance.url}`, { ...tuning, glanceToken: TOKENS.admin.token })
      return {
        origin,
        // An image uploaded to Glance, whose id the origin is told (as the node's alias table would).
        put: async (hex, bytes) => { origin.learn(hex, (await glance.upload(bytes)).id) },
        putManifest: async () => { throw new Error('Glance holds no manifests') },
        teardown: async () => {}
      }
    }
  })

  t.test('the origin opens from its URL, reads by id, and refuses what is not a Glance id', async t => {
    const origin = await openOrigin(`glance+${glance.url}`, { glanceToken: TOKENS.admin.token })
    t.teardown(async () => { await origin.close?.() })
    t.equal(origin.url, `glance+${glance.url}`)
    const bytes = seededBytes(300_000, 'by id')
    const image = await glance.upload(bytes)
    const g = origin as ReturnType<typeof glanceOrigin>
    t.equal((await g.describe(image.id)).os_hash_algo, 'sha512')
    t.ok((await collect(g.readById(image.id, { offset: 1000, length: 5000 }))).equals(bytes.subarray(1000, 6000)), 'a range by id')
    await t.rejects(g.describe('00000000-0000-4000-8000-000000000000'), OriginNotFoundError)
    await t.rejects(g.describe('../../etc'), OriginNotFoundError, 'no path tricks reach Glance')
    await t.rejects(g.describe(image.id, { token: 'nobody' }), { code: 'IMGSWARM_ORIGIN_DENIED' }, 'a token Glance refuses')
  })

  t.test('a Glance image is stored checked against Glance\'s own hash; a corrupted one is refused and nothing is stored', async t => {
    const store = await LevelStore.open()
    t.teardown(async () => { await store.close() })
    const origin = glanceOrigin(`glance+${glance.url}`, { glanceToken: TOKENS.admin.token, retryDelayMs: 10 })
    t.teardown(async () => { await origin.close() })
    const images = new GlanceImages(origin, store)
    const bytes = seededBytes(2 * 1024 * 1024 + 17, 'checked')
    const good = await glance.upload(bytes, { name: 'good', diskFormat: 'qcow2' })
    const found = await images.resolve(good.id)
    t.equal(found.hex, sha256Hex(bytes))
    t.equal(found.from, 'glance-download')
    const record = await store.resolve(good.id)
    t.equal(record.ref, `sha256:${sha256Hex(bytes)}`, 'the Glance id resolves in the store')
    t.match(record, { name: 'good', format: 'qcow2', type: 'machine', state: 'available' })
    t.equal((await images.resolve(good.id)).from, 'alias', 'a second resolve needs no download')

    const evil = seededBytes(1024 * 1024, 'corrupted')
    const bad = await glance.upload(evil)
    const flipped = Buffer.from(evil)
    flipped[500_000] ^= 1
    await writeFile(join(glance.storeDir, bad.id), flipped)
    await t.rejects(images.resolve(bad.id), DigestMismatchError, 'the bytes do not match os_hash_value')
    await t.rejects(images.resolve(bad.id), { message: /sha512.*refused, nothing stored/ })
    t.equal((await store.listImages()).length, 1, 'nothing was stored')
    await t.rejects(store.resolve(bad.id), { code: 'IMGSWARM_IMAGE_NOT_FOUND' }, 'and no alias recorded')
  })

  t.test('the node\'s Glance endpoint: glanceclient downloads through it, Glance authorises every read', async t => {
    const dir = await tempDir(t)
    const tokenFile = join(dir, 'glance-token')
    await writeFile(tokenFile, `${TOKENS.admin.token}\n`)
    const node = await startDaemon(t, { config: { origin: `glance+${glance.countingUrl}`, glanceTokenFile: tokenFile } })
    const api = formatApiAddress(node.daemon.api.address)
    const bytes = seededBytes(3 * 1024 * 1024 + 5, 'endpoint')
    const image = await glance.upload(bytes, { name: 'cirros', token: TOKENS.alice.token })
    const before = glance.fileRequests()

    const out = join(dir, 'first.img')
    const first = await download(api, TOKENS.alice.token, image.id, out, t)
    t.equal(first.code, 0, `${first.by} exits 0 (${first.stderr.trim()})`)
    t.ok((await readFile(out)).equals(bytes), 'the bytes are the image')
    t.equal(glance.fileRequests() - before, 1, 'Glance served the file once, to the node')

    const second = await download(api, TOKENS.alice.token, image.id, join(dir, 'second.img'), t)
    t.equal(second.code, 0)
    t.ok((await readFile(join(dir, 'second.img'))).equals(bytes))
    t.equal(glance.fileRequests() - before, 1, 'the second download came from the node\'s store')

    // The id names the image on the node's own API and in ls.
    const info = await node.client.inspect(image.id)
    t.equal(info.ref, `sha256:${sha256Hex(bytes)}`)
    const listed = (await node.client.list()).find(r => r.ref === info.ref)
    t.same(listed?.glanceIds, [image.id], 'ls shows the Glance id')

    // The node's own API fetches by Glance id too, with the node's token.
    const fresh = seededBytes(700_000, 'by id on the local API')
    const other = await glance.upload(fresh, { name: 'by-id' })
    const exported = await node.client.export(other.id, join(dir, 'by-id.img'))
    t.ok((await readFile(join(dir, 'by-id.img'))).equals(fresh), 'GET /v1/images/{glance id} gives the image')
    t.match(exported, { ref: `sha256:${sha256Hex(fresh)}`, name: 'by-id', glanceIds: [other.id] })
    await t.rejects(node.client.inspect('00000000-0000-4000-8000-000000000000'), { code: 'IMGSWARM_IMAGE_NOT_FOUND' })

    // Glance's own metadata and schema documents pass through.
    const schema = await call(api, 'GET', '/v2/schemas/image', TOKENS.alice.token)
    const theirs = await call(glance.url, 'GET', '/v2/schemas/image', TOKENS.alice.token)
    t.equal(schema.status, 200)
    t.equal(schema.body, theirs.body, 'the image schema is Glance\'s own')
    const meta = await call(api, 'GET', `/v2/images/${image.id}`, TOKENS.alice.token)
    t.equal(JSON.parse(meta.body).os_hash_value, image.os_hash_value)
    const versions = await call(api, 'GET', '/versions')
    t.equal(versions.status, 200)
    t.match(versions.body, api, 'the version document points at the node')

    // Single ranges as Glance answers them.
    const ranged = await call(api, 'GET', `/v2/images/${image.id}/file`, TOKENS.alice.token, undefined, undefined, { range: 'bytes=100-199' })
    t.equal(ranged.status, 206)
    t.equal(ranged.headers['content-range'], `bytes 100-199/${bytes.length}`)
    t.ok(Buffer.from(ranged.body, 'latin1').equals(bytes.subarray(100, 200)))
    t.equal((await call(api, 'GET', `/v2/images/${image.id}/file`, TOKENS.alice.token, undefined, undefined, { range: 'bytes=0-1,5-6' })).status, 400, 'several ranges: 400')
    const beyond = await call(api, 'GET', `/v2/images/${image.id}/file`, TOKENS.alice.token, undefined, undefined, { range: `bytes=${bytes.length}-` })
    t.equal(beyond.status, 416)
    t.equal(beyond.headers['content-range'], undefined, 'no Content-Range, as Glance')

    // A caller Glance refuses gets nothing, though the node holds the image.
    const bob = await call(api, 'GET', `/v2/images/${image.id}/file`, TOKENS.bob.token)
    t.equal(bob.status, 404, 'another project\'s private image is not found')
    t.match(bob.body, /^404 Not Found\n\nNo image found with ID/, 'in Glance\'s own words')
    t.notOk(bob.body.includes(Buffer.from(bytes.subarray(0, 64)).toString('latin1')), 'no image bytes')
    const bobCli = await glanceDownload(api, TOKENS.bob.token, image.id, join(dir, 'bob.img'), t)
    if (bobCli !== undefined) t.not(bobCli.code, 0, 'glance image-download fails for bob')
    const nobody = await call(api, 'GET', `/v2/images/${image.id}/file`, 'stolen')
    t.equal(nobody.status, 401, 'an unknown token: 401 from Glance')
    const none = await call(api, 'GET', `/v2/images/${image.id}/file`)
    t.equal(none.status, 401, 'no token: 401 from Glance, though the local API trusts this caller')

    // An unknown id: Glance's 404.
    const unknown = await call(api, 'GET', '/v2/images/00000000-0000-4000-8000-000000000000/file', TOKENS.admin.token)
    t.equal(unknown.status, 404)
    t.match(unknown.body, /^404 Not Found\n\nNo image found with ID 00000000-0000-4000-8000-000000000000/)

    // A corrupted Glance file: refused, never served, nothing stored.
    const evil = seededBytes(1024 * 1024, 'corrupted through the endpoint')
    const bad = await glance.upload(evil)
    const flipped = Buffer.from(evil)
    flipped[1000] ^= 0x80
    await writeFile(join(glance.storeDir, bad.id), flipped)
    const refused = await call(api, 'GET', `/v2/images/${bad.id}/file`, TOKENS.admin.token)
    t.equal(refused.status, 502)
    t.match(refused.body, /^502 Bad Gateway\n\n.*hash to sha512:.*refused, nothing stored/s)
    const badCli = await glanceDownload(api, TOKENS.admin.token, bad.id, join(dir, 'bad.img'), t)
    if (badCli !== undefined) t.not(badCli.code, 0, 'glance image-download fails')
    await t.rejects(node.client.inspect(bad.id), { code: 'IMGSWARM_IMAGE_NOT_FOUND' }, 'the node stored nothing under that id')
  })

  t.test('a caller\'s token is used only while its request is served; other reads from Glance carry the node\'s', async t => {
    const dir = await tempDir(t)
    const tokenFile = join(dir, 'glance-token')
    await writeFile(tokenFile, TOKENS.admin.token)
    const node = await startDaemon(t, { config: { origin: `glance+${glance.countingUrl}`, glanceTokenFile: tokenFile } })
    const api = formatApiAddress(node.daemon.api.address)
    const carol = { user: 'carol', project: 'project-a', roles: ['member', 'reader'] }
    await glance.setToken('carol-token', carol)
    t.teardown(async () => { await glance.setToken('carol-token', undefined) })
    const bytes = seededBytes(1024 * 1024 + 9, 'a caller\'s token')
    const image = await glance.upload(bytes, { token: TOKENS.alice.token })
    const ref = `sha256:${sha256Hex(bytes)}`

    const first = await call(api, 'GET', `/v2/images/${image.id}/file`, 'carol-token')
    t.equal(first.status, 200, 'carol downloads the image through the node')
    await node.client.remove(ref, { force: true })
    await glance.setToken('carol-token', undefined)

    // The node knows the sha256 now: a fetch by it reads from Glance with the node's token, not carol's.
    let seen = glance.fileTokens().length
    const fetched = await node.daemon.fetcher.fetch(ref)
    t.equal(fetched.state, 'available', 'a later fetch succeeds though carol\'s token is revoked')
    t.ok(glance.fileTokens().length > seen, 'and read from Glance')
    t.same([...new Set(glance.fileTokens().slice(seen))], [TOKENS.admin.token], 'with the node\'s own token')

    // A caller's request that needs Glance's bytes passes its own token on.
    await node.client.remove(ref, { force: true })
    seen = glance.fileTokens().length
    const alice = await call(api, 'GET', `/v2/images/${image.id}/file`, TOKENS.alice.token)
    t.equal(alice.status, 200)
    t.ok(Buffer.from(alice.body, 'latin1').equals(bytes), 'alice gets the image')
    t.ok(glance.fileTokens().length > seen, 'read from Glance again')
    t.same([...new Set(glance.fileTokens().slice(seen))], [TOKENS.alice.token], 'with alice\'s token, the caller being served')

    await node.client.remove(ref, { force: true })
    seen = glance.fileTokens().length
    await node.daemon.fetcher.fetch(ref)
    t.same([...new Set(glance.fileTokens().slice(seen))], [TOKENS.admin.token], 'once her request ended, not hers any more')
  })

  t.test('imgswarm get takes a Glance id, through the daemon and in-process; an image not yet active is refused, saying why', async t => {
    const dir = await tempDir(t)
    const tokenFile = join(dir, 'glance-token')
    await writeFile(tokenFile, TOKENS.admin.token)
    const node = await startDaemon(t, { config: { origin: `glance+${glance.countingUrl}`, glanceTokenFile: tokenFile } })
    const env = { IMGSWARM_DATA: node.dir }
    const bytes = seededBytes(900_000, 'imgswarm get by Glance id')
    const image = await glance.upload(bytes, { name: 'by-cli', token: TOKENS.alice.token })

    const got = await runCli(['get', image.id, '-o', join(dir, 'got.img')], { env })
    t.equal(got.code, 0, got.stderr)
    t.ok((await readFile(join(dir, 'got.img'))).equals(bytes), 'through the daemon: the exact image')
    t.same((await node.client.inspect(image.id)).glanceIds, [image.id], 'stored under its sha256, with the id')

    // With no daemon, get runs a node in this process with the same flags.
    const alone = await runCli(['get', image.id, '-o', join(dir, 'alone.img'), '--origin', `glance+${glance.url}`, '--glance-token-file', tokenFile, '--listen', '/ip4/127.0.0.1/tcp/0'], { env: { IMGSWARM_DATA: join(dir, 'alone') } })
    t.equal(alone.code, 0, alone.stderr)
    t.ok((await readFile(join(dir, 'alone.img'))).equals(bytes), 'in-process: the exact image')

    // An image created but never uploaded stays "queued" in Glance.
    const created = await call(glance.url, 'POST', '/v2/images', TOKENS.alice.token, JSON.stringify({ name: 'queued', disk_format: 'raw', container_format: 'bare' }), 'application/json')
    t.equal(created.status, 201)
    const queued = (JSON.parse(created.body) as { id: string, status: string })
    t.equal(queued.status, 'queued')
    await t.rejects(node.daemon.fetcher.fetch(queued.id), { code: 'IMGSWARM_IMAGE_NOT_AVAILABLE', message: `Glance image ${queued.id} is queued, not active` })
    const refused = await runCli(['get', queued.id, '-o', join(dir, 'queued.img')], { env })
    t.equal(refused.code, 1)
    t.match(refused.stderr, `Glance image ${queued.id} is queued, not active`, 'the CLI says why')
    const through = await call(formatApiAddress(node.daemon.api.address), 'GET', `/v2/images/${queued.id}/file`, TOKENS.alice.token)
    t.equal(through.status, 204, 'the endpoint leaves it to Glance, which has no data for it')
    t.equal(through.body, '')
    await t.rejects(node.client.inspect(queued.id), { code: 'IMGSWARM_IMAGE_NOT_FOUND' }, 'nothing stored under it')
  })

  t.test('two nodes: the second gets a Glance image from the first, no byte from Glance; a false claim is caught', async t => {
    const dir = await tempDir(t)
    const tokenFile = join(dir, 'glance-token')
    await writeFile(tokenFile, TOKENS.admin.token)
    const config = { origin: `glance+${glance.countingUrl}`, glanceTokenFile: tokenFile }
    const a = await startDaemon(t, { config })
    const b = await startDaemon(t, { config, bootstrap: [a.addr] })
    await waitReady(b)
    const apiA = formatApiAddress(a.daemon.api.address)
    const apiB = formatApiAddress(b.daemon.api.address)
    const bytes = seededBytes(4 * 1024 * 1024 + 3, 'two nodes')
    const image = await glance.upload(bytes, { token: TOKENS.alice.token })
    const files = glance.fileRequests()
    const glanceBytes = glance.fileBytes()

    const t0 = Date.now()
    const first = await download(apiA, TOKENS.alice.token, image.id, join(dir, 'a.img'), t)
    t.equal(first.code, 0, `${first.by} through the first node (${first.stderr.trim()})`)
    t.equal(glance.fileRequests() - files, 1, 'the first node read the file from Glance once')
    t.comment(`first node: ${Date.now() - t0} ms`)
    const t1 = Date.now()
    const second = await download(apiB, TOKENS.alice.token, image.id, join(dir, 'b.img'), t)
    t.equal(second.code, 0, `${second.by} through the second node (${second.stderr.trim()})`)
    t.ok((await readFile(join(dir, 'b.img'))).equals(bytes), second.glanceclient ? 'glanceclient got the image, its hash checked' : 'the bytes are the image')
    t.equal(glance.fileRequests() - files, 1, 'no file request to Glance from the second node')
    t.equal(glance.fileBytes() - glanceBytes, bytes.length, 'Glance sent the image\'s bytes once in all')
    t.comment(`second node: ${Date.now() - t1} ms`)
    const onB = await b.client.inspect(image.id)
    t.comment(JSON.stringify(onB.sources))
    t.ok((onB.sources?.peers ?? 0) >= bytes.length, 'the second node\'s bytes came from its neighbour (and its manifest)')
    t.equal(onB.sources?.origin, 0)

    // A neighbour that names the wrong image for an id (same size, Glance's hash copied) is caught
    // by the hash check, and the node gets the image from Glance instead.
    const other = seededBytes(1024 * 1024, 'the real one')
    const decoy = seededBytes(1024 * 1024, 'a decoy of the same size')
    const real = await glance.upload(other, { token: TOKENS.alice.token })
    const imported = await a.client.importStream((async function * () { yield decoy })())
    await a.daemon.local.store.glanceAliases.put({
      id: real.id, hex: imported.record.ref.slice(7), endpoint: glance.countingUrl, size: real.size,
      osHashAlgo: real.os_hash_algo, osHashValue: real.os_hash_value, checksum: real.checksum, recorded: new Date().toISOString()
    })
    const before = glance.fileRequests()
    const t2 = Date.now()
    const got = await call(apiB, 'GET', `/v2/images/${real.id}/file`, TOKENS.alice.token)
    t.equal(got.status, 200)
    t.comment(`after a false claim: ${Date.now() - t2} ms`)
    t.ok(Buffer.from(got.body, 'latin1').equals(other), 'the real image, not the decoy')
    t.equal(glance.fileRequests() - before, 1, 'read from Glance after the claim failed its check')
    t.equal((await b.client.inspect(real.id)).ref, `sha256:${sha256Hex(other)}`, 'the alias recorded is the true one')
  })

  t.test('a Glance image larger than the cache cap: not stored; Nova gets it from Glance as without imgswarm', async t => {
    const dir = await tempDir(t)
    const tokenFile = join(dir, 'glance-token')
    await writeFile(tokenFile, TOKENS.admin.token)
    const d = await startDaemon(t, { config: { origin: `glance+${glance.countingUrl}`, glanceTokenFile: tokenFile, maxSize: { bytes: 1024 * 1024 }, highWater: 0.9, lowWater: 0.5 } })
    const bytes = seededBytes(2 * 1024 * 1024, 'over the cap')
    const image = await glance.upload(bytes, { token: TOKENS.alice.token })
    const glanceBytes = glance.fileBytes()
    await t.rejects(d.daemon.fetcher.fetch(image.id), { code: 'IMGSWARM_CACHE_FULL', message: `cannot fetch Glance image ${image.id}: it needs 2.00 MiB, more than the cache cap of 1.00 MiB (--max-size)` }, 'a fetch by the id is refused before a byte is read')
    t.equal(glance.fileBytes() - glanceBytes, 0, 'no byte read from Glance for it')
    const got = await call(formatApiAddress(d.daemon.api.address), 'GET', `/v2/images/${image.id}/file`, TOKENS.alice.token)
    t.equal(got.status, 200)
    t.ok(Buffer.from(got.body, 'latin1').equals(bytes), 'the endpoint passes the request to Glance')
    t.same(await d.client.list(), [], 'nothing stored')
  })

  t.test('a node not connected to the holder finds the Glance id through the DHT, with no byte from Glance', async t => {
    const dir = await tempDir(t)
    const tokenFile = join(dir, 'glance-token')
    await writeFile(tokenFile, TOKENS.admin.token)
    const config = { origin: `glance+${glance.countingUrl}`, glanceTokenFile: tokenFile }
    const b = await startDaemon(t) // a DHT node that knows nothing of Glance
    const a = await startDaemon(t, { config, bootstrap: [b.addr] })
    const c = await startDaemon(t, { config, bootstrap: [b.addr] })
    await waitReady(a)
    await waitReady(c)
    const bytes = seededBytes(2 * 1024 * 1024 + 5, 'through the DHT')
    const image = await glance.upload(bytes, { token: TOKENS.alice.token })
    const files = glance.fileRequests()
    const first = await call(formatApiAddress(a.daemon.api.address), 'GET', `/v2/images/${image.id}/file`, TOKENS.alice.token)
    t.equal(first.status, 200, 'the first node reads it from Glance')
    t.equal(glance.fileRequests() - files, 1)
    // A announced the id: the DHT, asked from C (which knows only B), names A.
    const key = glanceAliasCid(glance.countingUrl, image.id)
    let named = false
    for (let i = 0; i < 20 && !named; i++) {
      for await (const p of c.daemon.peer.contentRouting.findProviders(key, { signal: AbortSignal.timeout(5000) })) named ||= p.id.equals(a.daemon.peer.peerId)
      if (!named) await new Promise(resolve => setTimeout(resolve, 250))
    }
    t.ok(named, 'the DHT names A under the id\'s key')
    // The DHT's own upkeep may have connected C to A; cut that, so the DHT is the way to A.
    await c.daemon.peer.hangUp(a.daemon.peer.peerId)
    const second = await call(formatApiAddress(c.daemon.api.address), 'GET', `/v2/images/${image.id}/file`, TOKENS.alice.token)
    t.equal(second.status, 200)
    t.ok(Buffer.from(second.body, 'latin1').equals(bytes), 'C serves the image exactly')
    t.equal(glance.fileRequests() - files, 1, 'no file request to Glance from C')
    const onC = await c.client.inspect(image.id)
    t.equal(onC.sources?.origin, 0, 'C took no byte from the origin')
  })
})

t.test('a Glance that does not answer: the endpoint answers 504 in Glance\'s shape, or cuts a stalled body, within the origin\'s timeout', async t => {
  const STALL_ANSWER = '11111111-1111-4111-8111-111111111111'
  const STALL_RECORD = '22222222-2222-4222-8222-222222222222'
  // A stand-in for Glance that takes requests and stalls: no answer, or half an answer.
  const stalled = createServer((req, res) => {
    if (req.url === `/v2/images/${STALL_RECORD}` || req.url === '/v2/schemas/member') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 100_000 })
      res.write('{"id": ')
    }
  })
  await new Promise<void>(resolve => stalled.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    stalled.closeAllConnections()
    await new Promise(resolve => stalled.close(resolve))
  })
  const port = (stalled.address() as { port: number }).port
  const node = await startDaemon(t, { config: { origin: `glance+http://127.0.0.1:${port}?timeoutMs=500&retries=0` } })
  const api = formatApiAddress(node.daemon.api.address)
  const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
    const t0 = Date.now()
    const r = await fn()
    return [r, Date.now() - t0]
  }

  const [file, fileMs] = await timed(async () => await call(api, 'GET', `/v2/images/${STALL_ANSWER}/file`, TOKENS.alice.token))
  t.equal(file.status, 504, 'no answer to the image\'s metadata: 504')
  t.match(file.body, /^504 Gateway Timeout\n\n.*Glance did not answer in 500 ms/, 'in Glance\'s shape')
  t.ok(fileMs < 10_000, `within the timeout (${fileMs} ms)`)

  const [record, recordMs] = await timed(async () => await call(api, 'GET', `/v2/images/${STALL_RECORD}/file`, TOKENS.alice.token))
  t.equal(record.status, 504, 'half an image record: 504')
  t.match(record.body, /^504 Gateway Timeout\n\n.*image record.*500 ms/)
  t.ok(recordMs < 10_000, `within the timeout (${recordMs} ms)`)

  const [passed, passedMs] = await timed(async () => await call(api, 'GET', '/v2/schemas/image', TOKENS.alice.token))
  t.equal(passed.status, 504, 'a request passed to Glance that gets no answer: 504')
  t.ok(passedMs < 10_000, `within the timeout (${passedMs} ms)`)

  const t0 = Date.now()
  await t.rejects(call(api, 'GET', '/v2/schemas/member', TOKENS.alice.token), 'a body Glance stops sending is cut, not left hanging')
  t.ok(Date.now() - t0 < 10_000, `within the timeout (${Date.now() - t0} ms)`)
})

interface Download { code: number, stdout: string, stderr: string }

/**
 * `glance image-download` (python3-glanceclient, on Debian's python) against an endpoint: glanceclient
 * as Nova calls it, with its own hash check. Where it is not installed, a skip says so and nothing runs.
 */
async function glanceDownload (endpoint: string, token: string, id: string, file: string, t: Test): Promise<Download | undefined> {
  const why = glanceClientMissing()
  if (why !== undefined) {
    t.pass('glance image-download (glanceclient as Nova calls it, with its hash check)', { skip: why })
    return undefined
  }
  return await new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['/usr/bin/glance', '--os-image-url', endpoint, '--os-auth-token', token, '--os-image-api-version', '2', 'image-download', '--file', file, id], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += String(d) })
    child.stderr.on('data', d => { stderr += String(d) })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }) })
  })
}

/**
 * The image through the endpoint by {@link glanceDownload}, or where glanceclient is missing (skipped,
 * visibly) by a plain GET, so the node's side is still checked; `by` names which, for the messages.
 */
async function download (endpoint: string, token: string, id: string, file: string, t: Test): Promise<Download & { by: string, glanceclient: boolean }> {
  const r = await glanceDownload(endpoint, token, id, file, t)
  if (r !== undefined) return { ...r, by: 'glance image-download', glanceclient: true }
  const got = await call(endpoint, 'GET', `/v2/images/${id}/file`, token)
  if (got.status === 200) await writeFile(file, Buffer.from(got.body, 'latin1'))
  return { code: got.status === 200 ? 0 : 1, stdout: '', stderr: got.status === 200 ? '' : got.body, by: 'a plain GET, not glanceclient', glanceclient: false }
}
