import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { ImageProtectedError, UsageError } from '../src/errors.js'
import { LocalNode } from '../src/local-node.js'
import { runCli, tempDir } from './helpers/cli.js'
import { waitFor } from './helpers/failure.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { startDaemon, waitReady } from './helpers/daemons.js'

const MiB = 1024 * 1024

t.test('leases survive a restart, lapse after their TTL, and guard rm', async t => {
  const dir = await tempDir(t)
  let node = await LocalNode.open({ dir })
  t.teardown(async () => { await node.close() })
  const a = (await node.importStream(streamOf(seededBytes(MiB, 'lease-a')))).record.ref
  const b = (await node.importStream(streamOf(seededBytes(MiB, 'lease-b')))).record.ref
  await node.lease(a, 'nova:5f1c')
  const short = await node.lease(b, 'vm-2', { ttlMs: 1500 })
  t.ok(short.expires != null && Date.parse(short.expires) > Date.now(), 'a TTL lease says when it expires')
  await node.close()

  node = await LocalNode.open({ dir })
  const held = await node.leases()
  t.ok(held.some(l => l.ref === a && l.holder === 'nova:5f1c' && l.expires === undefined), 'the lease until release survived the restart')
  await t.rejects(node.remove(a), ImageProtectedError, 'rm refuses a leased image')
  await t.rejects(node.remove(a), /leased by nova:5f1c; release it first or use --force/)

  t.ok(await waitFor(async () => (await node.leases()).every(l => l.ref !== b), 10_000, 100), 'the TTL lease lapsed by itself')
  const removed = await node.remove(b)
  t.equal(removed.record.ref, b, 'once lapsed, the image can be removed without force')

  t.same(await node.release(a, 'nova:5f1c'), { ref: a, holder: 'nova:5f1c', released: true })
  t.same(await node.release(a, 'nova:5f1c'), { ref: a, holder: 'nova:5f1c', released: false }, 'releasing twice is harmless and says so')
  await node.remove(a)
  t.same(await node.list(), [])
  await t.rejects(node.lease(a, 'vm-1'), /no image/, 'an image that is not stored cannot be leased')
  await t.rejects(node.lease(b, 'has space'), UsageError)
})

t.test('renewing a lease keeps its start and moves its expiry; rm --force drops the leases', async t => {
  const node = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await node.close() })
  const a = (await node.importStream(streamOf(seededBytes(MiB, 'renew')))).record.ref
  const first = await node.lease(a, 'vm-1', { ttlMs: 60_000 })
  const renewed = await node.lease(a, 'vm-1', { ttlMs: 3_600_000 })
  t.equal(renewed.created, first.created)
  t.ok(Date.parse(renewed.expires!) > Date.parse(first.expires!))
  const forever = await node.lease(a, 'vm-1')
  t.equal(forever.expires, undefined, 'leasing without a TTL makes it last until released')
  await node.remove(a, { force: true })
  t.same(await node.leases(), [], 'the removed image\'s leases went with it')
})

t.test('CLI: lease, leases, release, df and ls on a store without a daemon', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'img.raw')
  await writeFile(file, seededBytes(3 * MiB, 'cli-lease'))
  const ref = sha256Ref(seededBytes(3 * MiB, 'cli-lease'))
  const data = ['--data', join(dir, 'data')]
  t.equal((await runCli(['import', file, '-q', ...data])).code, 0)

  const leased = await runCli(['lease', ref, '--holder', 'vm-7', '--ttl', '2h', '--json', ...data])
  t.equal(leased.code, 0, leased.stderr)
  const lease = JSON.parse(leased.stdout)
  t.equal(lease.holder, 'vm-7')
  t.ok(Math.abs(Date.parse(lease.expires) - Date.now() - 2 * 3_600_000) < 60_000, 'expires in two hours')

  const list = JSON.parse((await runCli(['leases', '--json', ...data])).stdout)
  t.same(list.map((l: { holder: string }) => l.holder), ['vm-7'])
  const ls = JSON.parse((await runCli(['ls', '--json', ...data])).stdout)
  t.same(ls[0].leasedBy, ['vm-7'])
  t.same(ls[0].sources, { local: 3 * MiB, peers: 0, origin: 0 }, 'an import came in locally')
  t.match((await runCli(['ls', ...data])).stdout, /leased\(1\)/)

  const rm = await runCli(['rm', ref, ...data])
  t.equal(rm.code, 1)
  t.match(rm.stderr, /^imgswarm rm: sha256:[0-9a-f]{64} is leased by vm-7; release it first or use --force\n$/)

  const df = JSON.parse((await runCli(['df', '--json', ...data])).stdout)
  t.equal(df.used, 3 * MiB)
  t.equal(df.leased, 3 * MiB)
  t.equal(df.reclaimable, 0, 'a leased image is not reclaimable')
  t.equal(df.cap, null, 'no daemon, no cap')
  t.match((await runCli(['df', ...data])).stdout, /cap +none/)

  const released = await runCli(['release', ref, '--holder', 'vm-7', ...data])
  t.equal(released.stdout, `released ${ref} from vm-7\n`)
  t.equal((await runCli(['release', ref, '--holder', 'vm-7', ...data])).stdout, `vm-7 held no lease on ${ref}\n`)

  const noHolder = await runCli(['lease', ref, ...data])
  t.equal(noHolder.code, 2)
  t.match(noHolder.stderr, /--holder ID is required/)
  const badTtl = await runCli(['lease', ref, '--holder', 'vm-7', '--ttl', 'soon', ...data])
  t.equal(badTtl.code, 2)
  t.match(badTtl.stderr, /^imgswarm lease: invalid duration "soon"/)
})

t.test('over the API: leases, pins, hits, and bytes by source from peers', async t => {
  const bytes = seededBytes(4 * MiB, 'api-views')
  const a = await startDaemon(t)
  const { record } = await a.client.importStream(streamOf(bytes))
  const b = await startDaemon(t, { bootstrap: [a.addr] })
  await waitReady(b)
  await b.daemon.fetcher.fetch(record.ref)
  const fetched = (await b.client.list()).find(r => r.ref === record.ref)!
  t.ok(fetched.sources!.peers >= bytes.length, `the bytes came from a peer (${fetched.sources!.peers})`)
  t.equal(fetched.sources!.origin, 0)
  t.ok(a.daemon.local.inUse.has(record.ref.slice(7)), 'serving a peer keeps the image in use on the serving node')
  t.equal(fetched.hits, 0)
  for (let i = 0; i < 2; i++) await b.client.export(record.ref, join(await tempDir(t), 'x.img'))
  const after = (await b.client.list()).find(r => r.ref === record.ref)!
  t.equal(after.hits, 2, 'each read counts as a hit')
  t.ok(after.lastAccess > fetched.lastAccess, 'and refreshes the last access')

  const lease = await b.client.lease(record.ref, 'vm-api', { ttlMs: 90_000 })
  t.equal(lease.holder, 'vm-api')
  t.same((await b.client.leases()).map(l => l.holder), ['vm-api'])
  t.equal((await b.client.pin(record.ref)).pinned, true, 'pins work over the API')
  const info = await b.client.inspect(record.ref)
  t.same(info.leases.map(l => l.holder), ['vm-api'], 'inspect shows the leases')
  t.same(await b.client.release(record.ref, 'vm-api'), { ref: record.ref, holder: 'vm-api', released: true })
  const got = await runCli(['get', record.ref, '-o', join(await tempDir(t), 'vm.img'), '--lease', 'vm-get', '--ttl', '1h', '-q', '--api', b.daemon.info().api])
  t.equal(got.code, 0, got.stderr)
  t.ok((await b.client.leases()).some(l => l.holder === 'vm-get' && l.ref === record.ref), 'get --lease leased the image it got')
  const badGet = await runCli(['get', record.ref, '-o', join(await tempDir(t), 'x.img'), '--ttl', '1h', '--api', b.daemon.info().api])
  t.equal(badGet.code, 2)
  t.match(badGet.stderr, /--ttl goes with --lease ID/)
  const res = await b.client.send('PUT', `/v1/images/${record.ref}/leases/vm-x`, { body: JSON.stringify({ ttl: 'later' }), headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 400, 'a bad TTL is a 400')
  res.resume()
})
