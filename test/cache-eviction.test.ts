import { createHash } from 'node:crypto'
import { get, type IncomingMessage } from 'node:http'
import t from 'tap'
import { CacheFullError, ImageProtectedError, UsageError } from '../src/errors.js'
import { LocalNode } from '../src/local-node.js'
import { parseDuration, parseSize, parseSizeLimit } from '../src/util/units.js'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { countingOrigin, originWith, startDaemon } from './helpers/daemons.js'

const MiB = 1024 * 1024

async function sha256Of (node: { export: LocalNode['export'] }, ref: string): Promise<string> {
  const hash = createHash('sha256')
  const { Writable } = await import('node:stream')
  await node.export(ref, new Writable({ write (chunk, _e, cb) { hash.update(chunk); cb() } }))
  return `sha256:${hash.digest('hex')}`
}

t.test('sizes, caps and durations parse as operators write them, and typos fail', async t => {
  t.equal(parseSize('10GiB'), 10 * 1024 ** 3)
  t.equal(parseSize('500M'), 500e6)
  t.equal(parseSize('1e9'), 1e9)
  t.same(parseSizeLimit('80%'), { percent: 80 })
  t.same(parseSizeLimit('2 MiB'), { bytes: 2 * MiB })
  t.equal(parseDuration('90s'), 90_000)
  t.equal(parseDuration('12h'), 12 * 3_600_000)
  t.equal(parseDuration('7d'), 7 * 86_400_000)
  t.equal(parseDuration('30'), 30_000, 'a bare number is seconds')
  for (const bad of ['10 GB of disk', '-1G', '0', '10XB', '']) t.throws(() => parseSize(bad), UsageError, bad)
  for (const bad of ['0%', '101%', 'x%']) t.throws(() => parseSizeLimit(bad), UsageError, bad)
  for (const bad of ['soon', '5 weeks', '0s']) t.throws(() => parseDuration(bad), UsageError, bad)
})

t.test('above the high watermark the least recently used images go, down to the low one', async t => {
  const dir = await tempDir(t)
  const node = await LocalNode.open({ dir, cache: { limits: { maxSize: { bytes: 10 * MiB }, highWater: 0.9, lowWater: 0.5 }, graceMs: 0 } })
  t.teardown(async () => { await node.close() })
  const images = ['a', 'b', 'c', 'd', 'e'].map(seed => seededBytes(2 * MiB, `evict-${seed}`))
  const refs: string[] = []
  for (const bytes of images.slice(0, 4)) refs.push((await node.importStream(streamOf(bytes))).record.ref)
  t.same(await node.evictor.enforce(), [], '8 MiB of a 10 MiB cap is under the 90% mark: nothing goes')
  await new Promise(resolve => setTimeout(resolve, 5))
  t.equal(await sha256Of(node, refs[0]), refs[0], 'reading a makes it the most recently used')
  refs.push((await node.importStream(streamOf(images[4]))).record.ref)

  const evicted = await node.evictor.enforce()
  t.same(evicted.map(r => r.ref), [refs[1], refs[2], refs[3]], 'b, c, d went, least recently used first, until at most 5 MiB was left')
  await node.evictor.settled()
  t.same((await node.list()).map(r => r.ref).sort(), [refs[0], refs[4]].sort(), 'a (read) and e (newest) stay')
  t.equal(await sha256Of(node, refs[0]), refs[0], 'a still reads back exactly')
  t.equal(await sha256Of(node, refs[4]), refs[4], 'e still reads back exactly')
  t.equal((await node.store.chunkStats()).bytes, 4 * MiB, 'the evicted images\' chunks were collected')
  const df = await node.df()
  t.equal(df.used, 4 * MiB)
  t.equal(df.cap, 10 * MiB)
  t.equal(df.reclaimable, 4 * MiB, 'nothing is protected, so all of it could go')
  t.equal(df.images, 2)
})

t.test('evicting an image keeps the chunks that a remaining image shares with it', async t => {
  const node = await LocalNode.open({ dir: await tempDir(t), cache: { limits: { maxSize: { bytes: 4 * MiB }, highWater: 0.9, lowWater: 0.5 }, graceMs: 0 } })
  t.teardown(async () => { await node.close() })
  const base = seededBytes(2 * MiB, 'shared-base')
  const grown = Buffer.concat([base, seededBytes(2 * MiB, 'shared-tail')])
  const old = (await node.importStream(streamOf(grown))).record.ref
  await new Promise(resolve => setTimeout(resolve, 5))
  const kept = (await node.importStream(streamOf(base))).record.ref
  const used = (await node.df()).used
  t.ok(used >= 4 * MiB && used <= 4 * MiB + 256 * 1024, `shared chunks count once: 4 MiB and at most base's last chunk (${used})`)
  t.same((await node.evictor.enforce()).map(r => r.ref), [old], 'the older, larger image goes')
  await node.evictor.settled()
  t.equal(await sha256Of(node, kept), kept, 'the image that shared its chunks reads back exactly')
  const stats = await node.store.chunkStats()
  t.ok(stats.bytes >= 2 * MiB - 256 * 1024 && stats.bytes <= 2 * MiB + 256 * 1024, `about the kept image's 2 MiB remain (${stats.bytes})`)
})

t.test('pinned, leased and in-use images survive eviction while concurrent fetches run', async t => {
  const names = ['pinned', 'leased', 'inuse', 'v1', 'v2', 'n1', 'n2', 'n3']
  const images = names.map(n => seededBytes(n === 'inuse' ? 16 * MiB : 2 * MiB, `protect-${n}`))
  const { origin } = await originWith(t, images)
  const refs = Object.fromEntries(names.map((n, i) => [n, sha256Ref(images[i])]))
  // A short grace: v1 and v2 leave it before the new fetches, which stay in it, so a fetch that ends
  // while another is admitted is not what that admission evicts (whatever the machine's load).
  const d = await startDaemon(t, { origin, config: { maxSize: { bytes: 32 * MiB }, highWater: 0.9, lowWater: 0.5, evictionGraceMs: 2000 } })
  for (const n of ['pinned', 'leased', 'inuse', 'v1', 'v2']) await d.daemon.fetcher.fetch(refs[n])
  await d.client.pin(refs.pinned)
  const lease = await d.client.lease(refs.leased, 'vm-0042')
  t.equal(lease.holder, 'vm-0042')

  // A VM spawning from "inuse": a real API read that has started and is stalled by its reader.
  const api = d.daemon.info().api
  const res = await new Promise<IncomingMessage>((resolve, reject) => get(`${api}/v1/images/${refs.inuse}`, resolve).on('error', reject))
  await new Promise(resolve => res.once('data', resolve))
  res.pause()
  t.teardown(() => { res.destroy() })
  t.ok(d.daemon.local.inUse.has(refs.inuse.slice(7)), 'the stalled read holds the image in use')

  await new Promise(resolve => setTimeout(resolve, 2100))
  // 24 MiB stored; three more 2 MiB fetches at once cross the 28.8 MiB mark.
  const fetched = await Promise.all(['n1', 'n2', 'n3'].map(async n => await d.daemon.fetcher.fetch(refs[n])))
  t.same(fetched.map(r => r.state), ['available', 'available', 'available'], 'every concurrent fetch finished')
  await d.daemon.local.evictor.settled()
  const stored = new Set((await d.client.list()).map(r => r.ref))
  for (const n of ['pinned', 'leased', 'inuse', 'n1', 'n2', 'n3']) t.ok(stored.has(refs[n]), `${n} is still stored`)
  t.notOk(stored.has(refs.v1) || stored.has(refs.v2), 'only the unprotected v1 and v2 were evicted')
  for (const n of ['pinned', 'leased', 'n1']) t.equal(await sha256Of(d.client, refs[n]), refs[n], `${n} reads back exactly`)
  res.resume()
  const rest = createHash('sha256')
  for await (const piece of res) rest.update(piece as Buffer)
  t.equal(res.complete, true, 'the stalled read finished once resumed')

  const df = await d.client.df()
  t.ok(df.pinned >= 2 * MiB && df.leased >= 2 * MiB, `df counts pinned (${df.pinned}) and leased (${df.leased}) bytes`)
  await t.rejects(d.client.remove(refs.leased), ImageProtectedError, 'rm refuses a leased image')
  const listing = (await d.client.list()).find(r => r.ref === refs.leased)
  t.same(listing?.leasedBy, ['vm-0042'], 'ls shows who leases it')
  const metrics = await d.client.send('GET', '/metrics')
  let text = ''
  for await (const piece of metrics) text += String(piece)
  t.match(text, /^imgswarm_evictions_total 2$/m, 'both evictions are counted')
})

t.test('a fetch that cannot fit under the cap fails before it writes anything', async t => {
  const big = seededBytes(12 * MiB, 'too-big')
  const held = seededBytes(6 * MiB, 'held')
  const small = seededBytes(4 * MiB, 'small')
  const { origin: inner } = await originWith(t, [big, held, small])
  const { origin, counts } = countingOrigin(inner)
  const d = await startDaemon(t, { origin, config: { maxSize: { bytes: 8 * MiB } } })

  const err = await d.daemon.fetcher.fetch(sha256Ref(big)).catch((e: Error) => e)
  t.type(err, CacheFullError)
  t.match((err as Error).message, /needs 12(\.0+)? MiB, more than the cache cap of 8(\.0+)? MiB/)
  t.equal(counts.bytes, 0, 'no chunk was read from the origin')
  t.same(await d.client.list(), [], 'no record was left behind')
  t.equal((await d.daemon.local.store.chunkStats()).chunks, 0, 'no chunk was written')

  await d.daemon.fetcher.fetch(sha256Ref(held))
  await d.client.pin(sha256Ref(held))
  const err2 = await d.daemon.fetcher.fetch(sha256Ref(small)).catch((e: Error) => e)
  t.type(err2, CacheFullError)
  t.match((err2 as Error).message, /held by pinned, leased, in-use, recently used or fetching images .*6(\.0+)? MiB pinned/)
  t.same((await d.client.list()).map(r => r.ref), [sha256Ref(held)], 'the pinned image stays and nothing else was stored')

  const cli = await runCli(['get', sha256Ref(big), '-o', `${await tempDir(t)}/big.img`, '--api', d.daemon.info().api])
  t.equal(cli.code, 1)
  t.match(cli.stderr, /^imgswarm get: .*cannot fetch sha256:[0-9a-f]{64}: it needs 12(\.0+)? MiB, more than the cache cap/)
  t.equal(cli.stderr.trim().split('\n').length, 1, 'one line')
})

t.test('near the cap, fetches in a row are not refused while evictable images exist', async t => {
  const names = ['pinned', 'leased', 'a', 'b', 'c']
  const images = names.map(n => seededBytes(6 * MiB, `row-${n}`))
  const { origin } = await originWith(t, images)
  const refs = Object.fromEntries(names.map((n, i) => [n, sha256Ref(images[i])]))
  const d = await startDaemon(t, { origin, config: { maxSize: { bytes: 20 * MiB }, evictionGraceMs: 0 } })
  await d.daemon.fetcher.fetch(refs.pinned)
  await d.client.pin(refs.pinned)
  await d.daemon.fetcher.fetch(refs.leased)
  await d.client.lease(refs.leased, 'vm-1')
  // Each needs the one before it evicted; a survey from the previous admission must not count it as fetching.
  for (const n of ['a', 'b', 'c']) {
    const rec = await d.daemon.fetcher.fetch(refs[n])
    t.equal(rec.state, 'available', `${n} was admitted and fetched`)
    await new Promise(resolve => setTimeout(resolve, 1000))
  }
  const stored = new Set((await d.client.list()).map(r => r.ref))
  t.ok(stored.has(refs.pinned) && stored.has(refs.leased) && stored.has(refs.c), 'pinned, leased and the newest stay')
})

t.test('a fetch that would fit once a recently used image may go waits for it, saying why, instead of failing', async t => {
  const names = ['pinned', 'leased', 'recent', 'next']
  const images = names.map(n => seededBytes(6 * MiB, `wait-${n}`))
  const { origin } = await originWith(t, images)
  const refs = Object.fromEntries(names.map((n, i) => [n, sha256Ref(images[i])]))
  const d = await startDaemon(t, { origin, config: { maxSize: { bytes: 20 * MiB }, evictionGraceMs: 3000 } })
  for (const n of ['pinned', 'leased']) await d.daemon.fetcher.fetch(refs[n])
  await d.client.pin(refs.pinned)
  await d.client.lease(refs.leased, 'vm-1')
  await new Promise(resolve => setTimeout(resolve, 3100)) // past the grace: only pins and leases hold them
  await d.daemon.fetcher.fetch(refs.recent)
  const job = d.daemon.fetcher.start(refs.next)
  let seen: string | undefined
  for (const until = Date.now() + 10_000; seen == null && !job.finished && Date.now() < until;) {
    seen = job.status.waiting
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  t.match(seen, /cannot fetch sha256:[0-9a-f]{64}: .*; waiting for busy or recently used images to become evictable/, 'the status says why it waits')
  await job.promise
  t.equal(job.status.state, 'available', 'admitted once the recent image left its grace period')
  t.equal(job.status.waiting, undefined, 'no longer waiting')
  const stored = new Set((await d.client.list()).map(r => r.ref))
  t.notOk(stored.has(refs.recent), 'the recently used image was evicted for it')
})

t.test('an origin with no manifest: the image\'s size is checked against the cap before the stream', async t => {
  const big = seededBytes(10 * MiB, 'no-manifest-big')
  const { origin: inner } = await originWith(t, [big], { manifests: false })
  const { origin, counts } = countingOrigin(inner)
  const d = await startDaemon(t, { origin, config: { maxSize: { bytes: 8 * MiB } } })
  await t.rejects(d.daemon.fetcher.fetch(sha256Ref(big)), CacheFullError)
  t.equal(counts.bytes, 0, 'the origin stream was never read')
  t.same(await d.client.list(), [])
})

t.test('a replica the cluster\'s policy keeps here is not evicted, as if pinned', async t => {
  const kept = new Set<string>()
  const node = await LocalNode.open({ dir: await tempDir(t), cache: { limits: { maxSize: { bytes: 4 * MiB }, highWater: 0.9, lowWater: 0.5 }, graceMs: 0, protects: hex => kept.has(hex) } })
  t.teardown(async () => { await node.close() })
  const replica = (await node.importStream(streamOf(seededBytes(2 * MiB, 'replica-old')))).record.ref
  await new Promise(resolve => setTimeout(resolve, 5))
  const other = (await node.importStream(streamOf(seededBytes(2 * MiB, 'replica-new')))).record.ref
  kept.add(replica.slice(7))
  t.same((await node.evictor.enforce()).map(r => r.ref), [other], 'the newer image went instead of the older replica')
  t.equal((await node.df()).pinned, 2 * MiB, 'df counts the replica with the pinned bytes')
})

t.test('an image fetched, imported or read within the grace period is not evicted', async t => {
  const node = await LocalNode.open({ dir: await tempDir(t), cache: { limits: { maxSize: { bytes: 4 * MiB }, highWater: 0.9, lowWater: 0.5 }, graceMs: 1500 } })
  t.teardown(async () => { await node.close() })
  const old = (await node.importStream(streamOf(seededBytes(2 * MiB, 'grace-old')))).record.ref
  const fresh = (await node.importStream(streamOf(seededBytes(2 * MiB, 'grace-new')))).record.ref
  t.same(await node.evictor.enforce(), [], 'both were imported just now: nothing goes, though the store is over its high mark')
  t.equal((await node.df()).inUse, 4 * MiB, 'df counts them as in use')
  await new Promise(resolve => setTimeout(resolve, 1600))
  t.same((await node.evictor.enforce()).map(r => r.ref), [old], 'once the grace is over, the least recently used goes')
  t.same((await node.list()).map(r => r.ref), [fresh])
})

t.test('a new version evicts the old one it shares chunks with: the shared chunks survive the GC and the fetch completes', async t => {
  const base = seededBytes(2 * MiB, 'upgrade-base')
  const v1 = Buffer.concat([base, seededBytes(2 * MiB, 'upgrade-v1')])
  const v2 = Buffer.concat([base, seededBytes(2 * MiB, 'upgrade-v2')])
  const { origin: inner } = await originWith(t, [v1, v2])
  const { origin, counts } = countingOrigin(inner)
  const d = await startDaemon(t, { origin, config: { maxSize: { bytes: 6 * MiB }, highWater: 0.9, lowWater: 0.5, evictionGraceMs: 0 } })
  await d.daemon.fetcher.fetch(sha256Ref(v1))
  const before = counts.bytes
  const record = await d.daemon.fetcher.fetch(sha256Ref(v2))
  t.equal(record.state, 'available')
  await d.daemon.local.evictor.settled()
  t.same((await d.client.list()).map(r => r.ref), [sha256Ref(v2)], 'v1 was evicted to make room')
  t.equal(await sha256Of(d.client, sha256Ref(v2)), sha256Ref(v2), 'v2 reads back exactly after the GC')
  t.ok(counts.bytes - before < v2.length, `the chunks v2 shares with v1 were not read again (${counts.bytes - before} origin bytes for v2)`)
  const verify = await d.client.verify()
  t.same(verify.failed, [], 'verify finds every chunk')
})

t.test('admissions in a row count each other until their fetches record the images', async t => {
  const { ManifestBuilder } = await import('../src/chunks/manifest.js')
  const { DEFAULT_CHUNKER } = await import('../src/chunks/fastcdc.js')
  const node = await LocalNode.open({ dir: await tempDir(t), cache: { limits: { maxSize: { bytes: 10 * MiB }, highWater: 0.5, lowWater: 0.4 }, graceMs: 0, admitWaitMs: 0 } })
  t.teardown(async () => { await node.close() })
  const pinned = (await node.importStream(streamOf(seededBytes(6 * MiB, 'row-pinned')))).record.ref
  await node.pin(pinned)
  const manifestOf = (name: string, mib: number): ReturnType<InstanceType<typeof ManifestBuilder>['build']> => {
    const b = new ManifestBuilder()
    for (let c = 0; c < mib * 16; c++) b.add(createHash('sha256').update(`${name}/${c}`).digest(), 64 * 1024)
    return b.build(createHash('sha256').update(name).digest(), DEFAULT_CHUNKER, { type: 'other', name, format: '' })
  }
  const admit = async (name: string, mib: number): ReturnType<typeof node.evictor.admit> => {
    const m = manifestOf(name, mib)
    return await node.evictor.admit({ hex: Buffer.from(m.digest).toString('hex'), size: m.size, manifest: m })
  }
  const a = await admit('a', 2)
  const b = await admit('b', 2)
  // Not waited for (admitWaitMs 0): the admitted fetches would give their room back in time, and
  // waiting is tested on its own below.
  await t.rejects(admit('c', 1), CacheFullError, '6 pinned + 2 + 2 admitted leave no room for 1 more MiB under 10')
  b.release()
  const c = await admit('c', 1)
  t.pass('once a fetch gave up its room, the next fits')
  a.release()
  c.release()
})
