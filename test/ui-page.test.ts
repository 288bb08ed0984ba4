import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, tempDir } from './helpers/cli.js'
import { seededBytes, streamOf } from './helpers/data.js'
import { countingOrigin, originWith, startDaemon, waitReady } from './helpers/daemons.js'

const CHROMIUM = process.env.IMGSWARM_CHROMIUM ?? '/usr/bin/chromium'
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set IMGSWARM_CHROMIUM): the cluster page is not tested in a browser`

/** Waits (bounded) until `check` holds, polling the page. */
async function until (what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > end) throw new Error(`the page never showed ${what}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

t.test('the cluster page in a real browser: two nodes, live fetch, no console errors', { skip, timeout: 120_000 }, async t => {
  const { default: puppeteer } = await import('puppeteer-core')
  const bytes = seededBytes(12 * 1024 * 1024 + 7, 'ui-page')
  const { origin } = countingOrigin((await originWith(t, [])).origin)
  const a = await startDaemon(t, { config: { name: 'node-a' } })
  const { record } = await a.client.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'debian-12 <b>bold</b>' } })
  const b = await startDaemon(t, { bootstrap: [a.addr], origin, config: { name: 'node-b' } })
  await waitReady(b)
  await b.client.importStream(streamOf(seededBytes(100_000, 'small')), { meta: { type: 'kernel', name: 'vmlinuz <i>x</i>' } })

  const session = await b.client.call<{ url: string, expires: string }>('POST', '/v1/ui/session', {})
  t.match(session.url, /^http:\/\/127\.0\.0\.1:\d+\/ui\/\?t=login\.\d+\.[A-Za-z0-9_-]{43}$/, 'imgswarm ui\'s URL: the API\'s address, /ui/, a signed token')
  t.ok(Date.parse(session.expires) - Date.now() >= 10 * 60_000, 'the URL works for at least 10 minutes')

  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 900 })
  const problems: string[] = []
  page.on('console', m => { if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`) })
  page.on('pageerror', err => { problems.push(`page error: ${String(err)}`) })
  page.on('requestfailed', r => { if (!r.url().endsWith('/ui/events')) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`) })
  page.on('response', r => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`) })

  const first = await page.goto(session.url, { waitUntil: 'domcontentloaded' })
  t.equal(new URL(page.url()).search, '', 'the token is gone from the address bar after the redirect')
  const html = await first!.text()
  t.match(html, 'node-b', 'the first HTML holds the node\'s name')
  t.match(html, b.daemon.peer.peerId.toString(), 'and its peer ID')
  t.match(html, 'vmlinuz &lt;i&gt;x&lt;/i&gt;', 'and image names, escaped')

  await until('the live stream', async () => await page.$eval('#live', e => e.className.includes('on')))
  await until('node-a in the nodes table', async () => (await page.$eval('#nodes tbody', e => e.textContent ?? '')).includes('node-a'))
  const nodes = await page.$$eval('#nodes tbody tr', rows => rows.map(r => r.textContent ?? ''))
  t.equal(nodes.length, 2, 'two nodes listed')
  t.match(nodes[0], 'node-b (this node)')
  t.match(nodes[1], a.daemon.peer.peerId.toString(), 'the other node by its peer ID, read over the cluster protocol')
  t.match(nodes[1], '0.1.0', 'with its version')

  // B fetches A's image while the page watches: the image appears, held by both, bytes from peers.
  await b.client.export(record.ref, join(await tempDir(t), 'got.img'))
  await until('the fetched image held by both nodes', async () => {
    const rows = await page.$$eval('#images tbody tr', trs => trs.map(r => r.textContent ?? ''))
    return rows.some(r => r.includes('available') && r.includes('node-a') && r.includes('node-b'))
  })
  const row = (await page.$$eval('#images tbody tr', trs => trs.map(r => r.textContent ?? ''))).find(r => r.includes('node-a'))!
  t.match(row, 'debian-12 <b>bold</b>', 'the name shown as text, not markup')
  t.match(row, 'peers 12.0 MiB', 'bytes by source: the image came from a peer')
  t.match(row, 'origin 0 B', 'and nothing from the origin')
  await until('the finished fetch in the job list', async () => (await page.$eval('#jobs', e => e.textContent ?? '')).includes('available in'))
  t.equal(await page.$$eval('#chart svg polyline', ls => ls.length), 3, 'the throughput chart draws three series')
  t.equal(await page.$('#images b, #images i'), null, 'no markup from an image name reached the page')

  const artifacts = join(ROOT, '.tap')
  await mkdir(artifacts, { recursive: true })
  await page.screenshot({ path: join(artifacts, 'ui-cluster.png'), fullPage: true })
  if (process.env.IMGSWARM_UPDATE_DOCS === '1') await page.screenshot({ path: join(ROOT, 'docs', 'ui-cluster.png'), fullPage: true })
  t.same(problems, [], 'no console errors, failed requests or error responses')

  // A forged or stale token is refused and lets nothing in.
  const forged = session.url.replace(/.{4}$/, 'AAAA')
  const other = await browser.createBrowserContext()
  const p2 = await other.newPage()
  const res = await p2.goto(forged)
  t.equal(res?.status(), 403, 'a forged token is refused')
  t.match(await p2.content(), 'Run <code>imgswarm ui</code> again')
  await other.close()
})
