import { spawn } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import t, { type Test } from 'tap'
import { BundleReader } from '../src/bundle/bundle-reader.js'
import { CarReader } from '../src/bundle/car-reader.js'
import { loadPublicKey } from '../src/bundle/operator-key.js'
import { BundleInvalidError, BundleUntrustedError } from '../src/errors.js'
import { LocalNode } from '../src/local-node.js'
import { LevelStore } from '../src/store/level-store.js'
import { BIN, runCli, tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { startDaemon } from './helpers/daemons.js'

const MiB = 1024 * 1024

interface Setup {
  dir: string
  /** Env of the source data dir, which holds images `a` and `b` (b begins with all of a). */
  src: NodeJS.ProcessEnv
  a: Buffer
  b: Buffer
  refA: string
  refB: string
}

/** Two images that share most of their chunks, imported into a fresh data dir. */
async function setup (t: Test): Promise<Setup> {
  const dir = await tempDir(t)
  const src = { IMGSWARM_DATA: join(dir, 'src') }
  const a = seededBytes(3 * MiB + 11, 'bundle-a')
  const b = Buffer.concat([a, seededBytes(3 * MiB, 'bundle-b')])
  await writeFile(join(dir, 'a.img'), a)
  await writeFile(join(dir, 'b.img'), b)
  for (const [file, name] of [['a.img', 'a'], ['b.img', 'b']]) {
    const r = await runCli(['import', join(dir, file), '--type', 'machine', '--name', name], { env: src })
    t.equal(r.code, 0, r.stderr)
  }
  return { dir, src, a, b, refA: sha256Ref(a), refB: sha256Ref(b) }
}

/** What a data dir holds: its image records (without access times) and its chunk digests. */
async function snapshot (dataDir: string): Promise<{ images: unknown[], chunks: string[] }> {
  const store = await LevelStore.open({ dir: dataDir })
  try {
    const images = (await store.listImages()).map(({ lastAccess: _l, ...rest }) => rest).sort((x, y) => x.ref.localeCompare(y.ref))
    const chunks: string[] = []
    for await (const d of store.digests()) chunks.push(Buffer.from(d).toString('hex'))
    return { images, chunks: chunks.sort() }
  } finally {
    await store.close()
  }
}

async function cliOk (t: Test, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const r = await runCli(args, { env })
  t.equal(r.code, 0, `imgswarm ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

async function keyPair (t: Test, path: string): Promise<string> {
  const out = JSON.parse(await cliOk(t, ['key', 'generate', '-o', path, '--json'], {}))
  return out.publicKey
}

/** The CAR header of a bundle file: where the blocks start, and its roots. */
function header (car: Buffer): { end: number, roots: unknown[] } {
  let len = 0
  let i = 0
  for (let shift = 0; ; shift += 7, i++) {
    len += (car[i] & 0x7f) * 2 ** shift
    if ((car[i] & 0x80) === 0) break
  }
  const start = i + 1
  return { end: start + len, roots: (dagCbor.decode(car.subarray(start, start + len)) as { roots: unknown[] }).roots }
}

function withRoots (car: Buffer, roots: unknown[]): Buffer {
  const body = Buffer.from(dagCbor.encode({ version: 1, roots }))
  const varint: number[] = []
  for (let n = body.length; ; n = Math.floor(n / 128)) {
    if (n < 128) { varint.push(n); break }
    varint.push((n & 0x7f) | 0x80)
  }
  return Buffer.concat([Buffer.from(varint), body, car.subarray(header(car).end)])
}

t.test('round trip between two data dirs with no daemon: same images, same bytes, shared chunks once', async t => {
  const s = await setup(t)
  const car = join(s.dir, 'two.car')
  const created = JSON.parse(await cliOk(t, ['bundle', 'create', s.refA, s.refB, s.refA.slice(0, 19), '-o', car, '--json'], s.src))
  t.same(created.images.map((i: { ref: string }) => i.ref), [s.refA, s.refB], 'each image once, in the order named')
  t.notOk('signedBy' in created, 'unsigned without --sign')
  t.equal(created.bytes, (await stat(car)).size, 'reports the bytes written')

  const srcChunks = (await snapshot(join(s.dir, 'src'))).chunks
  const dst = { IMGSWARM_DATA: join(s.dir, 'dst') }
  const imported = JSON.parse(await cliOk(t, ['bundle', 'import', car, '--json'], dst))
  t.same(imported.images.map((r: { ref: string, state: string, name: string }) => [r.ref, r.state, r.name]), [[s.refA, 'available', 'a'], [s.refB, 'available', 'b']])
  t.equal(imported.newChunks, srcChunks.length, 'every distinct chunk written once')
  t.equal(imported.blocks, 2 + srcChunks.length, 'the bundle holds two manifests and each chunk once')
  const dstSnap = await snapshot(join(s.dir, 'dst'))
  t.same(dstSnap.chunks, srcChunks, 'the target holds exactly the source\'s chunks')
  const sharedNames = dstSnap.images.reduce((n: number, r: any) => n + (r.chunks as number), 0)
  t.ok(sharedNames > srcChunks.length, 'the images share chunks (so dedupe was tested)')

  for (const [ref, bytes] of [[s.refA, s.a], [s.refB, s.b]] as const) {
    const out = join(s.dir, `out-${ref.slice(7, 15)}`)
    await cliOk(t, ['export', ref, '-o', out], dst)
    const back = await readFile(out)
    t.ok(back.equals(bytes), `export of ${ref.slice(0, 19)} gives the same bytes`)
    t.equal(sha256Ref(back), ref, 'and the same sha256')
  }

  const again = JSON.parse(await cliOk(t, ['bundle', 'import', car, '--json'], dst))
  t.equal(again.newChunks, 0, 'a second import writes no chunk')
  t.same((await snapshot(join(s.dir, 'dst'))).chunks, srcChunks)
})

t.test('stdout to stdin: bundle create -o - | bundle import -', async t => {
  const s = await setup(t)
  const dst = join(s.dir, 'piped')
  const code = await new Promise<number | null>((resolve, reject) => {
    const sh = spawn('sh', ['-c', `"${BIN}" bundle create "${s.refB}" -o - --data "${join(s.dir, 'src')}" | "${BIN}" bundle import - --data "${dst}"`], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    sh.stdout.setEncoding('utf8').on('data', d => { out += d })
    const timer = setTimeout(() => sh.kill('SIGKILL'), 120_000)
    sh.on('error', reject)
    sh.on('close', c => { clearTimeout(timer); t.equal(out, `${s.refB}\n`, 'import prints the ref'); resolve(c) })
  })
  t.equal(code, 0)
  const exported = join(s.dir, 'b.out')
  await cliOk(t, ['export', s.refB, '-o', exported], { IMGSWARM_DATA: dst })
  t.ok((await readFile(exported)).equals(s.b), 'the piped bundle gives the same image')
})

t.test('signed bundles: inspect names the signer; --trust of the right key imports, others are refused untouched', async t => {
  const s = await setup(t)
  const key = join(s.dir, 'op.key')
  const publicKey = await keyPair(t, key)
  const car = join(s.dir, 'signed.car')
  const created = JSON.parse(await cliOk(t, ['bundle', 'create', s.refA, s.refB, '-o', car, '--sign', key, '--json'], s.src))
  t.equal(created.signedBy, publicKey)

  const report = JSON.parse(await cliOk(t, ['bundle', 'inspect', car, '--json'], {}))
  t.equal(report.signedBy, publicKey, 'inspect names the signer')
  t.equal(report.roots.length, 3, 'roots: the envelope, then two manifests')
  t.same(report.roots.slice(1), report.images.map((i: { manifest: string }) => i.manifest))
  t.same(report.images.map((i: any) => [i.ref, i.name, i.type, i.size]), [[s.refA, 'a', 'machine', s.a.length], [s.refB, 'b', 'machine', s.b.length]])
  t.equal(report.blocks, 1 + 2 + report.chunks)
  t.equal(report.bytes, (await stat(car)).size)
  t.equal(report.missingChunks, 0)
  const human = await cliOk(t, ['bundle', 'inspect', car], {})
  t.match(human, `signed by ${publicKey} (signature valid)`)
  t.match(human, s.refB.slice(0, 19))

  const trusted = { IMGSWARM_DATA: join(s.dir, 'trusted') }
  t.equal(await cliOk(t, ['bundle', 'import', car, '--trust', `${key}.pub`], trusted), `${s.refA}\n${s.refB}\n`)

  // A target that already holds `a`: a refused bundle must leave it exactly as it was.
  const target = join(s.dir, 'target')
  await cliOk(t, ['import', join(s.dir, 'a.img'), '--name', 'a', '--type', 'machine'], { IMGSWARM_DATA: target })
  const before = await snapshot(target)
  const other = join(s.dir, 'other.key')
  await keyPair(t, other)
  const wrongKey = await runCli(['bundle', 'import', car, '--trust', `${other}.pub`], { env: { IMGSWARM_DATA: target } })
  t.equal(wrongKey.code, 1)
  t.match(wrongKey.stderr, `signed by key ${publicKey}, which is not trusted`)
  t.equal(wrongKey.stderr.trim().split('\n').length, 1, 'one line')

  const unsignedCar = join(s.dir, 'unsigned.car')
  await cliOk(t, ['bundle', 'create', s.refB, '-o', unsignedCar], s.src)
  const unsigned = await runCli(['bundle', 'import', unsignedCar, '--trust', `${key}.pub`], { env: { IMGSWARM_DATA: target } })
  t.equal(unsigned.code, 1)
  t.match(unsigned.stderr, /the bundle is unsigned/)
  t.same(await snapshot(target), before, 'the refused bundles changed nothing')

  // In process, the refusal comes before the first write.
  const node = await LocalNode.open({ dir: target })
  t.teardown(async () => { await node.close() })
  let puts = 0
  const putMany = node.store.putMany.bind(node.store)
  node.store.putMany = async (chunks, o) => { puts += chunks.length; await putMany(chunks, o) }
  await t.rejects(node.importBundle(streamOf(await readFile(car)), { trust: [await loadPublicKey(`${other}.pub`)] }), BundleUntrustedError)
  await t.rejects(node.importBundle(streamOf(await readFile(unsignedCar)), { trust: [await loadPublicKey(`${key}.pub`)] }), BundleUntrustedError)
  t.equal(puts, 0, 'nothing was written before the refusal')
})

t.test('a flipped byte in a chunk block is refused, and the chunks written before it are removed', async t => {
  const s = await setup(t)
  const car = join(s.dir, 'good.car')
  await cliOk(t, ['bundle', 'create', s.refA, s.refB, '-o', car], s.src)
  const bad = await readFile(car)
  bad[bad.length - 100] ^= 0x01 // in the data of the last chunk, after megabytes of new chunks
  const badCar = join(s.dir, 'bad.car')
  await writeFile(badCar, bad)

  const target = join(s.dir, 'target')
  await cliOk(t, ['import', join(s.dir, 'a.img'), '--name', 'a', '--type', 'machine'], { IMGSWARM_DATA: target })
  const before = await snapshot(target)
  const r = await runCli(['bundle', 'import', badCar], { env: { IMGSWARM_DATA: target } })
  t.equal(r.code, 1)
  t.match(r.stderr, /^imgswarm bundle: the bundle is damaged: chunk \S+ is corrupt/)
  t.same(await snapshot(target), before, 'same images, same chunks')

  const inspect = await runCli(['bundle', 'inspect', badCar], {})
  t.equal(inspect.code, 1, 'inspect finds the damage too')

  // In process: chunks were written before the bad block came, and were all deleted again.
  const node = await LocalNode.open({ dir: target })
  t.teardown(async () => { await node.close() })
  let puts = 0
  const putMany = node.store.putMany.bind(node.store)
  node.store.putMany = async (chunks, o) => { puts += chunks.length; await putMany(chunks, o) }
  await t.rejects(node.importBundle(streamOf(bad)), BundleInvalidError)
  t.ok(puts > 0, `${puts} new chunks were written before the damage was found`)
  await node.close()
  t.same(await snapshot(target), before, 'and none of them is left')
})

t.test('tampered root lists are refused and change nothing', async t => {
  const s = await setup(t)
  const key = join(s.dir, 'op.key')
  await keyPair(t, key)
  const signed = await readFile(await (async () => {
    const p = join(s.dir, 'signed.car')
    await cliOk(t, ['bundle', 'create', s.refA, s.refB, '-o', p, '--sign', key], s.src)
    return p
  })())
  const unsigned = await readFile(await (async () => {
    const p = join(s.dir, 'unsigned.car')
    await cliOk(t, ['bundle', 'create', s.refA, s.refB, '-o', p], s.src)
    return p
  })())
  const target = join(s.dir, 'target')
  await cliOk(t, ['import', join(s.dir, 'a.img')], { IMGSWARM_DATA: target })
  const before = await snapshot(target)
  const roots = header(signed).roots
  const cases: Array<[string, Buffer, RegExp]> = [
    ['signed, a root dropped', withRoots(signed, roots.slice(0, 2)), /not the list its signature covers/],
    ['signed, the roots swapped', withRoots(signed, [roots[0], roots[2], roots[1]]), /not the list its signature covers/],
    ['signed, the envelope dropped from the roots', withRoots(signed, roots.slice(1)), /must come there/],
    ['unsigned, the roots swapped', withRoots(unsigned, header(unsigned).roots.reverse()), /must come there/],
    ['unsigned, a root dropped', withRoots(unsigned, header(unsigned).roots.slice(0, 1)), /stray block|twice/]
  ]
  for (const [what, bytes, message] of cases) {
    const path = join(s.dir, 'tampered.car')
    await writeFile(path, bytes)
    const r = await runCli(['bundle', 'import', path], { env: { IMGSWARM_DATA: target } })
    t.equal(r.code, 1, what)
    t.match(r.stderr, message, what)
  }
  t.same(await snapshot(target), before, 'the target is unchanged')
})

t.test('hostile framing: an oversized section length and a truncated file are refused', async t => {
  const s = await setup(t)
  const car = await readFile(await (async () => {
    const p = join(s.dir, 'ok.car')
    await cliOk(t, ['bundle', 'create', s.refA, '-o', p], s.src)
    return p
  })())
  const { end } = header(car)
  const huge = Buffer.concat([car.subarray(0, end), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])]) // 2^35 bytes claimed
  await writeFile(join(s.dir, 'huge.car'), huge)
  const r = await runCli(['bundle', 'inspect', join(s.dir, 'huge.car')], {})
  t.equal(r.code, 1)
  t.match(r.stderr, /block length of 34359738368 bytes .* over the limit/)
  await writeFile(join(s.dir, 'short.car'), car.subarray(0, car.length - 5))
  const short = await runCli(['bundle', 'import', join(s.dir, 'short.car')], { env: { IMGSWARM_DATA: join(s.dir, 'dst') } })
  t.equal(short.code, 1)
  t.match(short.stderr, /cut short/)
  t.same((await snapshot(join(s.dir, 'dst'))).chunks, [], 'nothing was kept from the truncated bundle')
})

t.test('bundle create refuses an image that is not available, and writes no file', async t => {
  const s = await setup(t)
  const node = await LocalNode.open({ dir: join(s.dir, 'src') })
  await node.store.updateRecord(s.refA, { state: 'failed', reason: 'test' })
  await node.close()
  const out = join(s.dir, 'x.car')
  const r = await runCli(['bundle', 'create', s.refB, s.refA, '-o', out], { env: s.src })
  t.equal(r.code, 1)
  t.match(r.stderr, `${s.refA} is failed (test); only available images go into a bundle`)
  await t.rejects(stat(out), { code: 'ENOENT' }, 'no bundle file')
  const usage = await runCli(['bundle', 'create', s.refB], { env: s.src })
  t.equal(usage.code, 2)
  t.match(usage.stderr, /needs -o FILE/)
})

t.test('key generate writes a private key only its owner reads, and never overwrites', async t => {
  const dir = await tempDir(t)
  const key = join(dir, 'k')
  await keyPair(t, key)
  t.equal((await stat(key)).mode & 0o777, 0o600)
  t.match(await readFile(key, 'utf8'), /^-----BEGIN PRIVATE KEY-----/)
  t.match(await readFile(`${key}.pub`, 'utf8'), /^-----BEGIN PUBLIC KEY-----/)
  const original = await readFile(key)
  const again = await runCli(['key', 'generate', '-o', key], {})
  t.equal(again.code, 1)
  t.match(again.stderr, /exists already; refusing to overwrite/)
  t.ok((await readFile(key)).equals(original), 'the key is unchanged')
  await writeFile(join(dir, 'p.pub'), 'x')
  const pubTaken = await runCli(['key', 'generate', '-o', join(dir, 'p')], {})
  t.equal(pubTaken.code, 1)
  await t.rejects(stat(join(dir, 'p')), { code: 'ENOENT' }, 'no private key is left without its public half')
  const trustPrivate = await runCli(['bundle', 'import', key, '--trust', key], { env: { IMGSWARM_DATA: join(dir, 'd') } })
  t.match(trustPrivate.stderr, /holds a private key/)
})

t.test('through a running daemon: create signs on the client, import honours --trust', async t => {
  const s = await setup(t)
  const a = await startDaemon(t)
  const b = await startDaemon(t)
  await a.client.importStream(streamOf(s.a), { meta: { name: 'a', type: 'machine' } })
  await a.client.importStream(streamOf(s.b), { meta: { name: 'b', type: 'machine' } })
  const key = join(s.dir, 'op.key')
  const publicKey = await keyPair(t, key)
  const car = join(s.dir, 'daemon.car')
  const created = JSON.parse(await cliOk(t, ['bundle', 'create', s.refA, s.refB, '-o', car, '--sign', key, '--json'], { IMGSWARM_DATA: a.dir }))
  t.equal(created.signedBy, publicKey)
  const report = JSON.parse(await cliOk(t, ['bundle', 'inspect', car, '--json'], {}))
  t.equal(report.signedBy, publicKey, 'the bundle from the daemon is signed with the client\'s key')
  t.equal(report.roots.length, 3)

  const other = join(s.dir, 'other.key')
  await keyPair(t, other)
  const refused = await runCli(['bundle', 'import', car, '--trust', `${other}.pub`], { env: { IMGSWARM_DATA: b.dir } })
  t.equal(refused.code, 1)
  t.match(refused.stderr, /not trusted/)
  t.same(await b.client.list(), [], 'the daemon imported nothing')

  t.equal(await cliOk(t, ['bundle', 'import', car, '--trust', `${key}.pub`], { IMGSWARM_DATA: b.dir }), `${s.refA}\n${s.refB}\n`)
  const out = join(s.dir, 'b.out')
  await b.client.export(s.refB, out)
  t.ok((await readFile(out)).equals(s.b), 'the daemon serves the imported image')
  const missing = await runCli(['bundle', 'create', 'sha256:' + '0'.repeat(64), '-o', join(s.dir, 'none.car')], { env: { IMGSWARM_DATA: a.dir } })
  t.equal(missing.code, 1)
  t.match(missing.stderr, /no image/)
})

t.test('gc waits for an import in flight: the chunks it has written are not swept', async t => {
  const s = await setup(t)
  const car = await readFile(await (async () => {
    const p = join(s.dir, 'b.car')
    await cliOk(t, ['bundle', 'create', s.refB, '-o', p], s.src)
    return p
  })())
  const node = await LocalNode.open({ dir: join(s.dir, 'target') })
  t.teardown(async () => { await node.close() })
  let gc: Promise<{ chunks: number }> | undefined
  async function * source (): AsyncGenerator<Uint8Array> {
    const half = Math.floor(car.length / 2)
    yield * streamOf(car.subarray(0, half), 256 * 1024)
    // Megabytes of chunks are written by now and named by no image yet.
    gc = node.gc()
    await new Promise(resolve => setImmediate(resolve))
    yield * streamOf(car.subarray(half), 256 * 1024)
  }
  const result = await node.importBundle(source())
  t.ok(result.newChunks > 0)
  t.ok(gc != null, 'gc was started mid-import')
  t.equal((await gc!).chunks, 0, 'gc ran after the import and found nothing to sweep')
  const out = join(s.dir, 'b.out')
  await node.export(s.refB, out)
  t.ok((await readFile(out)).equals(s.b), 'the image is whole')
})

t.test('the CAR reader refuses malformed framing without buffering it', async t => {
  const headerOf = (value: unknown): Buffer => {
    const body = Buffer.from(dagCbor.encode(value))
    return Buffer.concat([Buffer.from([body.length]), body]) // every header here is under 128 bytes
  }
  const open = async (bytes: Uint8Array): Promise<unknown> => await CarReader.open(streamOf(bytes, 3))
  await t.rejects(open(new Uint8Array(0)), { name: 'BundleInvalidError', message: /empty/ })
  await t.rejects(open(headerOf({ version: 2 })), { message: /CARv2/ })
  await t.rejects(open(headerOf({ version: 1, roots: ['x'] })), { message: /not a CID/ })
  await t.rejects(open(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), { message: /malformed header length/ })
  await t.rejects(open(Buffer.from([0x80, 0x80, 0x80, 0x01])), { message: /header length of 2097152 bytes .* over the limit/ })
  const reader = await CarReader.open(streamOf(Buffer.concat([headerOf({ version: 1, roots: [] }), Buffer.from([0])]), 1))
  t.same(reader.roots, [])
  await t.rejects(reader.next(), { message: /empty section/ })
  await t.rejects(BundleReader.open(streamOf(headerOf({ version: 1, roots: [] }))), { message: /names no images/ })
})
