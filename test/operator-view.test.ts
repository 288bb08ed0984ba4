import { join } from 'node:path'
import t from 'tap'
import type { ImageEvent } from '../src/node/image-events.js'
import type { JobView } from '../src/node/job-board.js'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { metric, originWith, startDaemon, waitReady } from './helpers/daemons.js'

t.test('concurrent fetches: events, job list, status agreeing with df, hits, no listener warning', async t => {
  const warnings: string[] = []
  const onWarning = (w: Error): void => { warnings.push(`${w.name}: ${w.message}`) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const images = Array.from({ length: 6 }, (_, i) => seededBytes(6 * 1024 * 1024 + i, `ov-${i}`))
  const { origin, refs } = await originWith(t, images)
  const a = await startDaemon(t, { origin, config: { name: 'seed' } })
  await a.client.call('POST', '/v1/fetch?wait=true', { refs })
  // B has the origin too: on a busy machine a stalled peer's share is read from the origin instead,
  // as it should be, so this test counts bytes from both (daemon-fetch.test.ts proves the 0 origin bytes).
  const b = await startDaemon(t, { bootstrap: [a.addr], origin, config: { name: 'leaf' } })
  await waitReady(b)
  const events: ImageEvent[] = []
  b.daemon.events.subscribe(e => { events.push(e) })

  // Every image exported at once while the fetches run; each export ends with its image available.
  const out = await tempDir(t)
  await Promise.all(refs.map(async (ref, i) => {
    await b.client.export(ref, join(out, String(i)))
    t.equal((await b.client.inspect(ref)).state, 'available', `image ${i} is available when its get returns`)
  }))
  t.same(warnings, [], 'no MaxListenersExceededWarning (or any other) during concurrent fetches')
  for (const ref of refs) {
    t.same(events.filter(e => e.record.ref === ref).map(e => e.kind), ['fetching', 'available'], 'one fetching and one available event per image')
  }

  const jobs = await b.client.call<JobView[]>('GET', '/v1/fetch')
  t.equal(jobs.length, refs.length, 'GET /v1/fetch lists every fetch')
  for (const j of jobs) {
    t.equal(j.state, 'available')
    t.equal(j.percent, 100)
    t.equal(j.bytes.peer + j.bytes.origin + j.bytes.local >= j.size!, true, 'bytes by source cover the image')
  }
  t.ok(jobs.reduce((n, j) => n + j.bytes.peer, 0) > 0, 'bytes came from the seed')

  // A fetch of a held image is a hit: no bytes counted as moved.
  const localBefore = await metric(b.client, 'imgswarm_fetched_bytes_total', '{source="local"}')
  const hitsBefore = await metric(b.client, 'imgswarm_cache_requests_total', '{result="hit"}')
  const again = await b.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [refs[0]] })
  t.equal(again.ok, true)
  t.equal(await metric(b.client, 'imgswarm_fetched_bytes_total', '{source="local"}'), localBefore, 'no bytes counted for a hit')
  t.equal(await metric(b.client, 'imgswarm_cache_requests_total', '{result="hit"}'), hitsBefore + 1, 'counted as a hit')
  const listed = await b.client.call<JobView[]>('GET', '/v1/fetch')
  t.equal(listed[0].hit, true, 'the job list marks it held')

  const status = await b.client.call<any>('GET', '/v1/status')
  const df = await b.client.call<any>('GET', '/v1/df')
  t.equal(status.name, 'leaf')
  t.match(status.version, /^\d+\.\d+\.\d+/)
  t.ok(status.uptimeSeconds >= 0)
  t.equal(status.store.used, df.used, 'status and df agree on the store\'s use')
  t.equal(status.store.images, refs.length)
  t.equal(status.fetches.active, 0)

  const cli = await runCli(['status', '--api', b.daemon.info().api])
  t.equal(cli.code, 0, cli.stderr)
  t.match(cli.stdout, /name {6}leaf/)
  t.match(cli.stdout, /store {5}\S+ MiB used by 6 images \(no cap\)/)
  t.match(cli.stdout, /fetches {3}0 active/)
  const jobsCli = await runCli(['jobs', '--api', b.daemon.info().api])
  t.equal(jobsCli.code, 0, jobsCli.stderr)
  t.equal(jobsCli.stdout.split('\n').filter(l => / available | held /.test(l)).length, refs.length + 1, 'imgswarm jobs lists every fetch')
  const preheats = await b.client.call<unknown[]>('GET', '/v1/preheat')
  t.same(preheats, [], 'GET /v1/preheat lists preheats (none here)')
})

t.test('an API on a unix socket: the page on --ui, and imgswarm ui prints its URL', async t => {
  const dir = await tempDir(t)
  const d = await startDaemon(t, { dir, config: { api: `unix:${join(dir, 'api.sock')}`, ui: '127.0.0.1:0', name: 'sock' } })
  const url = d.daemon.operator.pageUrl!
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/ui\/$/)
  const r = await runCli(['ui', '--data', dir])
  t.equal(r.code, 0, r.stderr)
  const login = r.stdout.trim()
  t.match(login, new RegExp(`^${url.replace(/[.?]/g, '\\$&')}\\?t=login\\.`))
  const res = await fetch(login, { redirect: 'manual' })
  t.equal(res.status, 303)
  const cookie = res.headers.get('set-cookie')!.split(';')[0]
  const page = await fetch(url, { headers: { cookie } })
  t.equal(page.status, 200)
  t.match(await page.text(), '<span id="node-name">sock</span>')
  const other = await fetch(url.replace('/ui/', '/v1/images'), { headers: { cookie } })
  t.equal(other.status, 404, 'the page\'s port serves the page only, not the API')
  t.equal((await fetch(url, { headers: { authorization: 'Bearer wrong' } })).status, 403, 'no session and a wrong token: refused')
  const bad = await startDaemon(t, { config: { api: `unix:${join(await tempDir(t), 'a.sock')}` } })
  const none = await runCli(['ui', '--api', bad.daemon.info().api])
  t.equal(none.code, 2)
  t.match(none.stderr, /--ui 127\.0\.0\.1:PORT/, 'without --ui, imgswarm ui says what to do')
  await t.rejects(startDaemon(t, { config: { ui: '0.0.0.0:0' } }), /--ui takes a loopback HOST:PORT/)
})
