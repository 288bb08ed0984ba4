import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { originWith, startDaemon } from './helpers/daemons.js'

t.test('GET honours Range; HEAD gives state and size', async t => {
  const bytes = seededBytes(3 * 1024 * 1024 + 99, 'range')
  const a = await startDaemon(t)
  const { record } = await a.client.importStream(streamOf(bytes))
  const slice = async (range: string): Promise<{ status?: number, body: Buffer, headers: Record<string, unknown> }> => {
    const res = await a.client.send('GET', `/v1/images/${record.ref}`, { headers: { range } })
    const parts: Buffer[] = []
    for await (const p of res) parts.push(p as Buffer)
    return { status: res.statusCode, body: Buffer.concat(parts), headers: res.headers }
  }
  const mid = await slice('bytes=100000-1300000')
  t.equal(mid.status, 206)
  t.ok(mid.body.equals(bytes.subarray(100000, 1300001)), 'a middle range spanning chunks is exact')
  t.equal(mid.headers['content-range'], `bytes 100000-1300000/${bytes.length}`)
  t.ok((await slice('bytes=-10')).body.equals(bytes.subarray(bytes.length - 10)), 'a suffix range')
  t.ok((await slice(`bytes=${bytes.length - 1}-`)).body.equals(bytes.subarray(bytes.length - 1)), 'the last byte')
  t.equal((await slice(`bytes=${bytes.length}-`)).status, 416, 'past the end')
  const head = await a.client.send('HEAD', `/v1/images/${record.ref.slice(0, 19)}`)
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], String(bytes.length))
  t.equal(head.headers['x-imgswarm-state'], 'available')
  t.equal(head.headers['x-imgswarm-ref'], record.ref)
  head.resume()
})

t.test('the CLI goes through the daemon that holds the data dir; publish, get, status, peers', async t => {
  const dir = await tempDir(t)
  const originDir = join(dir, 'origin')
  const bytes = seededBytes(2 * 1024 * 1024 + 5, 'publish')
  await writeFile(join(dir, 'img'), bytes)
  const a = await startDaemon(t, { config: { publishOrigins: [pathToFileURL(originDir).href] } })
  const env = { IMGSWARM_DATA: a.dir }
  const refused = await runCli(['publish', join(dir, 'img'), '--origin', pathToFileURL(join(dir, 'elsewhere')).href], { env })
  t.equal(refused.code, 1, 'through a daemon, publish to an origin it is not configured with is refused')
  t.match(refused.stderr, /^imgswarm publish: this daemon publishes only to the origins it is configured with/)
  const pub = await runCli(['publish', join(dir, 'img'), '--origin', pathToFileURL(originDir).href, '--type', 'machine', '--name', 'pub'], { env })
  t.equal(pub.code, 0, pub.stderr)
  t.equal(pub.stdout.trim(), sha256Ref(bytes), 'publish prints the ref')
  const object = await readFile(join(originDir, 'sha256', sha256Ref(bytes).slice(7)))
  t.equal(createHash('sha256').update(object).digest('hex'), sha256Ref(bytes).slice(7), 'the origin holds the image')
  t.ok((await readFile(join(originDir, 'sha256', `${sha256Ref(bytes).slice(7)}.manifest`))).length > 0, 'and its manifest')
  const ls = JSON.parse((await runCli(['ls', '--json'], { env })).stdout)
  t.match(ls, [{ ref: sha256Ref(bytes), name: 'pub', state: 'available' }], 'publish kept the chunks in the daemon\'s store')
  const status = JSON.parse((await runCli(['status', '--json'], { env })).stdout)
  t.equal(status.peerId, a.daemon.peer.peerId.toString())
  t.equal(status.images, 1)
  t.equal((await runCli(['peers'], { env })).code, 0)

  // A second node with no daemon: `get` runs a node in-process, takes the image from A, and stops.
  const other = { IMGSWARM_DATA: join(dir, 'other') }
  const out = join(dir, 'got.img')
  const get = await runCli(['get', sha256Ref(bytes), '-o', out, '--bootstrap', a.addr], { env: other })
  t.equal(get.code, 0, get.stderr)
  t.ok((await readFile(out)).equals(bytes), 'get wrote the exact image')
  const again = await runCli(['ls', '--json'], { env: other })
  t.match(JSON.parse(again.stdout), [{ ref: sha256Ref(bytes), state: 'available' }], 'and keeps it in its own store')
})

t.test('get --dir fetches a spawn\'s images from the origin through the daemon', async t => {
  const images = [seededBytes(300_000, 'kernel'), seededBytes(900_000, 'ramdisk'), seededBytes(2_500_000, 'machine')]
  const { origin, refs } = await originWith(t, images)
  const b = await startDaemon(t, { origin })
  const dir = await tempDir(t)
  const get = await runCli(['get', ...refs, '--dir', dir], { env: { IMGSWARM_DATA: b.dir } })
  t.equal(get.code, 0, get.stderr)
  for (const [i, ref] of refs.entries()) t.ok((await readFile(join(dir, ref.slice(7)))).equals(images[i]), `image ${i} is exact`)
  const bad = await runCli(['get', refs[0], refs[1], '-o', join(dir, 'x')], { env: { IMGSWARM_DATA: b.dir } })
  t.equal(bad.code, 2)
  t.match(bad.stderr, /-o takes one REF; use --dir DIR for several/)
})

t.test('get --dir with a missing directory is refused before any fetch starts', async t => {
  const images = [seededBytes(600_000, 'no-dir')]
  const { origin, refs } = await originWith(t, images)
  const b = await startDaemon(t, { origin })
  const missing = join(await tempDir(t), 'not-there')
  const get = await runCli(['get', refs[0], '--dir', missing], { env: { IMGSWARM_DATA: b.dir } })
  t.equal(get.code, 2, 'a usage error')
  t.match(get.stderr, `imgswarm get: --dir ${missing} is not an existing directory`)
  t.same(b.daemon.jobs.list(), [], 'no fetch was started')
  t.same(await b.daemon.local.store.listImages(), [], 'nothing stored')
})
