import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { OriginAccessDeniedError, OriginConfigError, OriginError, OriginTimeoutError } from '../src/errors.js'
import { httpOrigin } from '../src/origin/http-origin.js'
import { seededBytes } from './helpers/data.js'
import { faultProxy, fileServer, silentServer } from './helpers/origin-servers.js'
import { collect, originSuite, sha256Hex } from './suites/origin.js'

/** A directory for a served origin; objects live below `<dir>/images/`, served at `/images`. */
async function originDir (): Promise<{ dir: string, put: (name: string, bytes: Uint8Array) => Promise<void>, remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-origin-http-'))
  return {
    dir,
    put: async (name, bytes) => {
      await mkdir(join(dir, 'images', 'sha256'), { recursive: true })
      await writeFile(join(dir, 'images', 'sha256', name), bytes)
    },
    remove: async () => { await rm(dir, { recursive: true, force: true }) }
  }
}

for (const ranges of [true, false]) {
  originSuite(t, {
    name: ranges ? 'http with Range' : 'http without Range',
    setup: async tuning => {
      const d = await originDir()
      const server = await fileServer(d.dir, { ranges })
      const proxy = await faultProxy(server.port)
      return {
        origin: httpOrigin(`${proxy.url}/images`, tuning),
        put: async (hex, bytes) => { await d.put(hex, bytes) },
        putManifest: async (hex, bytes) => { await d.put(`${hex}.manifest`, bytes) },
        breakNextRead: bytes => proxy.breakAfter(bytes),
        teardown: async () => {
          await proxy.close()
          await server.close()
          await d.remove()
        }
      }
    }
  })
}

const image = seededBytes(200_000, 'http-specific')
const hex = sha256Hex(image)

t.test('http: rangeRead says whether ranged reads cost only their bytes', async t => {
  for (const ranges of [true, false]) {
    const d = await originDir()
    await d.put(hex, image)
    const server = await fileServer(d.dir, { ranges })
    t.teardown(async () => { await server.close(); await d.remove() })
    const origin = httpOrigin(`${server.url}/images/`)
    t.teardown(async () => { await origin.close?.() })
    t.equal(origin.capabilities.rangeRead, true, 'assumed until the server shows otherwise')
    t.ok((await collect(origin.read(hex, { offset: 1000, length: 10 }))).equals(image.subarray(1000, 1010)))
    t.equal(origin.capabilities.rangeRead, ranges, ranges ? 'a 206 keeps it' : 'a 200 to a ranged GET turns it off')
    t.ok((await collect(origin.read(hex, { offset: 5, length: 5 }))).equals(image.subarray(5, 10)))
    if (!ranges) t.equal(server.requests.at(-1)?.range, undefined, 'and Range is no longer sent')
  }
  const off = httpOrigin('http://127.0.0.1:1/?range=false')
  t.equal(off.capabilities.rangeRead, false, 'range=false turns it off from the start')
})

t.test('http: range reads reuse keep-alive connections', async t => {
  const d = await originDir()
  await d.put(hex, image)
  const server = await fileServer(d.dir, { ranges: true })
  const proxy = await faultProxy(server.port)
  t.teardown(async () => { await proxy.close(); await server.close(); await d.remove() })
  const origin = httpOrigin(`${proxy.url}/images`)
  t.teardown(async () => { await origin.close?.() })
  for (let i = 0; i < 20; i++) t.equal((await collect(origin.read(hex, { offset: i * 5000, length: 4000 }))).length, 4000)
  await origin.stat(hex)
  t.ok(proxy.connections() <= 3, `21 sequential requests, ${proxy.connections()} connections`)
})

t.test('http: extra headers come from the URL and the options, and stay on their host', async t => {
  const d = await originDir()
  await d.put(hex, image)
  const target = await fileServer(d.dir, { ranges: true })
  const redirector = await fileServer(d.dir, {
    ranges: true,
    before: (req, res) => {
      if (!(req.url ?? '').includes('/moved/')) return false
      res.writeHead(302, { location: `${target.url}${(req.url ?? '').replace('/moved', '')}` }).end()
      return true
    }
  })
  t.teardown(async () => { await target.close(); await redirector.close(); await d.remove() })
  const origin = httpOrigin(`${redirector.url}/images?header=X-Token:%20abc`, { headers: { Authorization: 'Bearer s3cret' } })
  t.same(await origin.stat(hex), { size: image.length })
  const seen = redirector.requests.at(-1)?.headers
  t.equal(seen?.['x-token'], 'abc', 'header from the URL')
  t.equal(seen?.authorization, 'Bearer s3cret', 'header from the options')
  t.notMatch(origin.url, /abc|s3cret/, 'headers are not in the url shown')

  const moved = httpOrigin(`${redirector.url}/moved/images`, { headers: { Authorization: 'Bearer s3cret' } })
  t.ok((await collect(moved.read(hex, { offset: 10, length: 100 }))).equals(image.subarray(10, 110)), 'redirects are followed')
  t.equal(target.requests.at(-1)?.headers.authorization, undefined, 'credentials are not sent to another host')
  await origin.close?.()
  await moved.close?.()
})

t.test('http: refusals, server errors and retries', async t => {
  const d = await originDir()
  await d.put(hex, image)
  let failuresLeft = 0
  let status = 503
  const server = await fileServer(d.dir, {
    ranges: true,
    before: (req, res) => {
      if (req.headers.authorization !== 'Bearer ok') {
        res.writeHead(403, { 'content-length': 0 }).end()
        return true
      }
      if (failuresLeft-- <= 0) return false
      res.writeHead(status, { 'content-length': 0 }).end()
      return true
    }
  })
  t.teardown(async () => { await server.close(); await d.remove() })
  const tuning = { retries: 2, retryDelayMs: 5 }
  await t.rejects(httpOrigin(`${server.url}/images`, tuning).stat(hex), OriginAccessDeniedError, '403 is access denied')
  await t.rejects(collect(httpOrigin(`${server.url}/images`, tuning).read(hex)), OriginAccessDeniedError, 'for reads too')
  const origin = httpOrigin(`${server.url}/images`, { ...tuning, headers: { authorization: 'Bearer ok' } })

  failuresLeft = 2
  const before = server.requests.length
  t.ok((await collect(origin.read(hex))).equals(image), 'two 503s, then success within 2 retries')
  t.equal(server.requests.length - before, 3, 'three attempts')

  failuresLeft = 100
  status = 500
  await t.rejects(collect(origin.read(hex)), { name: 'OriginError', retryable: true, message: /HTTP 500/ }, 'gives up after the retries')
  await t.rejects(origin.stat(hex), OriginError)
  failuresLeft = 100
  status = 400
  const n = server.requests.length
  await t.rejects(collect(origin.read(hex)), { name: 'OriginError', retryable: false })
  t.equal(server.requests.length - n, 1, 'a 400 is not retried')
  failuresLeft = 0
  await origin.close?.()
})

t.test('http: a server that never answers times out, and an abort does not wait for it', async t => {
  const silent = await silentServer()
  t.teardown(silent.close)
  const origin = httpOrigin(`${silent.url}/images`, { timeoutMs: 300, retries: 1, retryDelayMs: 5 })
  t.teardown(async () => { await origin.close?.() })
  let start = Date.now()
  await t.rejects(origin.stat(hex), OriginTimeoutError, 'stat')
  await t.rejects(collect(origin.read(hex)), { name: 'OriginTimeoutError', message: /no answer for 300 ms/ }, 'read')
  await t.rejects(origin.readManifest(hex), OriginTimeoutError, 'readManifest')
  t.ok(Date.now() - start < 10_000, `bounded: ${Date.now() - start} ms for three calls of two attempts`)

  const patient = httpOrigin(`${silent.url}/images`, { timeoutMs: 60_000 })
  t.teardown(async () => { await patient.close?.() })
  start = Date.now()
  await t.rejects(collect(patient.read(hex, { signal: AbortSignal.timeout(200) })), { name: 'TimeoutError' }, 'the caller\'s signal reason comes through')
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 200)
  await t.rejects(patient.stat(hex, { signal: ac.signal }), { name: 'AbortError' })
  t.ok(Date.now() - start < 5000, 'aborts end the wait at once')
})

t.test('http: private CA from a file or the options', { skip: spawnSync('openssl', ['version']).status === 0 ? false : 'openssl not installed' }, async t => {
  const d = await originDir()
  t.teardown(d.remove)
  await d.put(hex, image)
  const pki = join(d.dir, 'pki')
  await mkdir(pki)
  const run = (args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: pki, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`)
  }
  await writeFile(join(pki, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n')
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=imgswarm test CA'])
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'])
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext'])
  const server = await fileServer(d.dir, { ranges: true, tls: { key: await readFile(join(pki, 'server.key'), 'utf8'), cert: await readFile(join(pki, 'server.pem'), 'utf8') } })
  t.teardown(server.close)

  await t.rejects(httpOrigin(`${server.url}/images`, { retries: 0 }).stat(hex), { name: 'OriginError', message: /TLS.*caFile/ }, 'an unknown CA is refused, with a hint')
  const viaParam = httpOrigin(`${server.url}/images?caFile=${encodeURIComponent(join(pki, 'ca.pem'))}`)
  t.ok((await collect(viaParam.read(hex, { offset: 7, length: 70_000 }))).equals(image.subarray(7, 70_007)), 'caFile parameter')
  const viaOption = httpOrigin(`${server.url}/images`, { ca: await readFile(join(pki, 'ca.pem'), 'utf8') })
  t.same(await viaOption.stat(hex), { size: image.length }, 'ca option')
  await viaParam.close?.()
  await viaOption.close?.()
})

t.test('http: URLs it cannot use are OriginConfigError', async t => {
  t.throws(() => httpOrigin('http://user:pw@127.0.0.1/'), OriginConfigError, 'credentials in the URL')
  t.throws(() => httpOrigin('http://127.0.0.1/?header=novalue'), OriginConfigError, 'a header without a colon')
  t.throws(() => httpOrigin('http://127.0.0.1/?caFile=/nonexistent/ca.pem'), OriginConfigError, 'an unreadable CA file')
  t.throws(() => httpOrigin('http://127.0.0.1/?timeout=5'), OriginConfigError, 'an unknown parameter')
  t.throws(() => httpOrigin('ftp://127.0.0.1/'), OriginConfigError, 'another scheme')
  t.equal(httpOrigin('https://example.com/base/?retries=1').url, 'https://example.com/base')
})
