import { execFile, spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parseImageNaming } from '../src/chunks/ref.js'
import { AmbiguousRefError, ImageNotFoundError, InvalidRefError } from '../src/errors.js'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, streamOf } from './helpers/data.js'
import { startDaemon } from './helpers/daemons.js'

const hex = 'ab'.repeat(32)
const noQemu = spawnSync('qemu-img', ['--version']).status === 0 ? false : 'qemu-img not found (apt-get install qemu-utils)'

t.test('the grammar: a name comes last, after every other form', async t => {
  t.same(parseImageNaming(`sha256:${hex}`), { kind: 'digest', hex })
  t.same(parseImageNaming(hex.slice(0, 12)), { kind: 'prefix', hex: hex.slice(0, 12) })
  t.equal(parseImageNaming('bafyreicmn7e5x52bzxih6majtuucrgioecjn6j4qhgcyj3ct7quovmwrbu').kind, 'manifest')
  t.same(parseImageNaming(' debian-12.raw '), { kind: 'name', name: 'debian-12.raw' })
  t.same(parseImageNaming('abcdef'), { kind: 'name', name: 'abcdef' }, 'short hex is a name, not a prefix')
  t.throws(() => parseImageNaming('sha256:xyz'), InvalidRefError, 'a malformed digest is no name')
  t.throws(() => parseImageNaming(hex + 'ab'), InvalidRefError, 'nor is a digest with too many digits')
  t.throws(() => parseImageNaming('  '), /empty/)
})

t.test('an image is named by its unique name in the store, the CLI, the API and NBD; an ambiguous name lists the images', async t => {
  const d = await startDaemon(t)
  const bytes = seededBytes(1_200_000, 'named')
  const { record } = await d.daemon.local.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'debian-12' } })
  const twins = []
  for (const seed of ['twin-a', 'twin-b']) twins.push((await d.daemon.local.importStream(streamOf(seededBytes(300_000, seed)), { meta: { type: 'kernel', name: 'vmlinuz' } })).record)

  t.equal((await d.daemon.local.store.resolve('debian-12')).ref, record.ref, 'the store resolves a name')
  await t.rejects(d.daemon.local.store.resolve('vmlinuz'), AmbiguousRefError)
  await t.rejects(d.daemon.local.store.resolve('nothing-like-it'), ImageNotFoundError)
  await t.rejects(d.daemon.local.store.resolve('abcdef'), /no image named abcdef in the store \(a hex prefix needs at least 12 digits\)/)

  const env = { IMGSWARM_DATA: d.dir }
  const inspect = await runCli(['inspect', 'debian-12', '--json'], { env })
  t.equal(inspect.code, 0, inspect.stderr)
  t.match(JSON.parse(inspect.stdout), { ref: record.ref, name: 'debian-12' }, 'inspect by name')
  const out = join(await tempDir(t), 'disk.raw')
  const get = await runCli(['get', 'debian-12', '-o', out], { env })
  t.equal(get.code, 0, get.stderr)
  t.ok((await readFile(out)).equals(bytes), 'get by name writes the image')

  const ambiguous = await runCli(['inspect', 'vmlinuz'], { env })
  t.equal(ambiguous.code, 1)
  t.match(ambiguous.stderr, /the name vmlinuz matches 2 images/)
  for (const twin of twins) t.match(ambiguous.stderr, twin.ref, `the error lists ${twin.ref.slice(0, 19)}…`)
  const fetch = await d.client.send('POST', '/v1/fetch', { body: JSON.stringify({ refs: ['vmlinuz'] }), headers: { 'content-type': 'application/json' } })
  t.equal(fetch.statusCode, 409, 'POST /v1/fetch of an ambiguous name is refused, nothing fetched')
  fetch.resume()
  const missing = await runCli(['get', 'no-such-image', '-o', join(await tempDir(t), 'x')], { env })
  t.equal(missing.code, 1)
  t.match(missing.stderr, /no image named no-such-image in the store/)
})

t.test('NBD exports are named by an image\'s name too', { skip: noQemu }, async t => {
  const d = await startDaemon(t)
  const bytes = seededBytes(700_000, 'nbd-named')
  await d.daemon.local.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'root-disk' } })
  const info = await new Promise<{ code: number, out: string }>(resolve => {
    execFile('qemu-img', ['info', '--output=json', `nbd+unix:///root-disk?socket=${join(d.dir, 'nbd.sock')}`], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : 1, out: stdout + stderr })
    })
  })
  t.equal(info.code, 0, info.out)
  if (info.code === 0) t.equal(JSON.parse(info.out)['virtual-size'], Math.ceil(bytes.length / 512) * 512, 'the export of that name is the image')
})
