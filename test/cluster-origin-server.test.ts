import { request } from 'node:http'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startOriginServer } from '../src/cluster/origin-server.js'
import { httpOrigin } from '../src/origin/http-origin.js'
import { seededBytes } from './helpers/data.js'
import { faultProxy } from './helpers/origin-servers.js'
import { collect, originSuite, sha256Hex } from './suites/origin.js'

// The cluster's origin server is what `http://` origins read in a test cluster: it passes the same suite.
originSuite(t, {
  name: 'cluster origin server',
  setup: async tuning => {
    const dir = await mkdtemp(join(tmpdir(), 'imgswarm-cluster-origin-'))
    const put = async (name: string, bytes: Uint8Array): Promise<void> => {
      await mkdir(join(dir, 'sha256'), { recursive: true })
      await writeFile(join(dir, 'sha256', name), bytes)
    }
    const server = await startOriginServer({ root: dir, host: '127.0.0.1', port: 0 })
    const proxy = await faultProxy(Number(new URL(server.url).port))
    return {
      origin: httpOrigin(proxy.url, tuning),
      put: async (hex, bytes) => { await put(hex, bytes) },
      putManifest: async (hex, bytes) => { await put(`${hex}.manifest`, bytes) },
      breakNextRead: bytes => proxy.breakAfter(bytes),
      teardown: async () => {
        await proxy.close()
        await server.close()
        await rm(dir, { recursive: true, force: true })
      }
    }
  }
})

async function get (url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number, headers: Record<string, unknown>, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, res => {
      const parts: Buffer[] = []
      res.on('data', (p: Buffer) => parts.push(p))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }) })
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('the origin server: ranges, HEAD, only the object layout, and the bytes it sent', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-cluster-origin-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const image = seededBytes(100_000, 'origin-server')
  const hex = sha256Hex(image)
  await mkdir(join(dir, 'sha256'))
  await writeFile(join(dir, 'sha256', hex), image)
  await writeFile(join(dir, 'secret'), 'not an object')
  const server = await startOriginServer({ root: dir, host: '127.0.0.1', port: 0 })
  t.teardown(server.close)
  const url = `${server.url}/sha256/${hex}`

  const whole = await get(url)
  t.equal(whole.status, 200)
  t.equal(whole.headers['accept-ranges'], 'bytes')
  t.ok(whole.body.equals(image))
  const mid = await get(url, { range: 'bytes=10-19' })
  t.equal(mid.status, 206)
  t.equal(mid.headers['content-range'], `bytes 10-19/${image.length}`)
  t.ok(mid.body.equals(image.subarray(10, 20)))
  const suffix = await get(url, { range: 'bytes=-5' })
  t.ok(suffix.body.equals(image.subarray(image.length - 5)), 'a suffix range')
  const open = await get(url, { range: `bytes=${image.length - 3}-` })
  t.ok(open.body.equals(image.subarray(image.length - 3)), 'an open range')
  const past = await get(url, { range: `bytes=${image.length}-` })
  t.equal(past.status, 416)
  t.equal(past.headers['content-range'], `bytes */${image.length}`)
  const head = await get(url, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(image.length))
  t.equal(head.body.length, 0)
  for (const path of ['/secret', '/sha256/../secret', '/%2e%2e/secret', `/sha256/${hex}/x`, '/sha256/ABC']) {
    t.equal((await get(`${server.url}${path}`)).status, 404, `${path} is not served`)
  }
  t.equal((await get(url, {}, 'DELETE')).status, 405)

  const origin = httpOrigin(server.url)
  t.teardown(async () => { await origin.close?.() })
  t.ok((await collect(origin.read(hex, { offset: 500, length: 1000 }))).equals(image.subarray(500, 1500)), 'the http origin reads ranges from it')
  t.equal(origin.capabilities.rangeRead, true)

  const stats = JSON.parse((await get(`${server.url}/-/stats`)).body.toString()) as { requests: number, bytes: number }
  t.equal(stats.bytes, image.length + 10 + 5 + 3 + 1000, 'stats count the body bytes sent')
  t.ok(stats.requests >= 13)
})
