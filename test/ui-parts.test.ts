import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { FetchJob } from '../src/fetch/fetch-job.js'
import { ImageEvents, type ImageEvent } from '../src/node/image-events.js'
import { JobBoard } from '../src/node/job-board.js'
import { Throughput, THROUGHPUT_SECONDS } from '../src/node/throughput.js'
import type { ImageRecord } from '../src/store/image-record.js'
import { checkSummary, MAX_SUMMARY_IMAGES } from '../src/ui/node-summary.js'
import { escapeHtml } from '../src/ui/page.js'
import { COOKIE_NAME, LOGIN_TTL_MS, SESSION_TTL_MS, UiSessions } from '../src/ui/ui-session.js'
import type { LogFields, Logger } from '../src/util/log.js'

const record = (name: string): ImageRecord => ({ ref: `sha256:${'ab'.repeat(32)}`, size: 10, state: 'available', pinned: false, manifest: 'bafy', chunks: 1, type: 'other', name, format: '', created: '', lastAccess: '' })

t.test('image events reach every subscriber; one that throws does not stop the others', async t => {
  const failures: unknown[] = []
  const events = new ImageEvents(err => { failures.push(err) })
  const seen: ImageEvent[] = []
  events.subscribe(() => { throw new Error('broken listener') })
  const stop = events.subscribe(e => { seen.push(e) })
  events.emit('fetching', record('a'))
  events.emit('evicted', record('a'), { freedBytes: 10 })
  t.same(seen.map(e => [e.kind, e.record.name, e.freedBytes]), [['fetching', 'a', undefined], ['evicted', 'a', 10]])
  t.equal(failures.length, 2, 'the broken listener was reported each time')
  stop()
  events.emit('imported', record('b'))
  t.equal(seen.length, 2, 'an unsubscribed listener hears nothing more')
  t.equal(events.listeners, 1)
})

t.test('login tokens and session cookies: signed, expiring, of their own kind', async t => {
  const s = new UiSessions()
  const now = Date.now()
  const { token, expires } = s.loginToken(now)
  t.equal(expires - now, LOGIN_TTL_MS)
  t.ok(LOGIN_TTL_MS >= 10 * 60_000, 'a login URL works for at least 10 minutes')
  t.ok(s.validLogin(token, now + 10 * 60_000), 'valid after 10 minutes')
  t.notOk(s.validLogin(token, expires + 1), 'not after it expires')
  t.notOk(s.validLogin(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'), now), 'a changed signature is refused')
  t.notOk(s.validLogin(token.replace(/\.\d+\./, `.${now + 10 ** 9}.`), now), 'a longer expiry is refused')
  t.notOk(new UiSessions().validLogin(token, now), 'another daemon run\'s key refuses it')
  const cookie = s.sessionCookie(false, now)
  t.match(cookie, /HttpOnly; SameSite=Strict/)
  t.match(cookie, /Path=\/ui\//)
  const value = cookie.split(';')[0]
  const req = (c?: string): IncomingMessage => ({ headers: c != null ? { cookie: c } : {} }) as unknown as IncomingMessage
  t.ok(s.hasSession(req(`other=1; ${value}`), now + SESSION_TTL_MS - 1))
  t.notOk(s.hasSession(req(value), now + SESSION_TTL_MS + 1), 'the session ends')
  t.notOk(s.hasSession(req(`${COOKIE_NAME}=${token}`), now), 'a login token is no session')
  t.notOk(s.validLogin(value.split('=')[1], now), 'a session is no login token')
  t.notOk(s.hasSession(req(), now))
})

t.test('a peer\'s summary is checked and bounded', async t => {
  const good = { name: 'x'.repeat(500), peerId: 'liar', version: '0.1.0', uptimeSeconds: 5, store: { used: 1, cap: null, images: 1 }, peers: 2, held: ['ab'.repeat(32)], heldOmitted: 0, jobs: [], rate: { peer: 0, origin: 0, served: 0 } }
  const s = checkSummary(good, 'real-id')
  t.equal(s.peerId, 'real-id', 'the peer ID is the connection\'s, not the peer\'s word')
  t.equal(s.name.length, 64, 'the name is cut to 64 characters')
  t.throws(() => checkSummary({ ...good, held: ['not hex'] }, 'p'), /held/)
  t.throws(() => checkSummary({ ...good, held: Array(MAX_SUMMARY_IMAGES + 1).fill('ab'.repeat(32)) }, 'p'), /held/)
  t.throws(() => checkSummary({ ...good, store: { used: -1, cap: null, images: 0 } }, 'p'), /store.used/)
  t.throws(() => checkSummary([], 'p'), /not an object/)
  t.throws(() => checkSummary({ ...good, jobs: [{ ref: 'r', state: 's', bytes: {}, rate: {} }] }, 'p'), /bytes/)
})

t.test('HTML escaping', async t => {
  t.equal(escapeHtml('<img src=x onerror="a">&\''), '&lt;img src=x onerror=&quot;a&quot;&gt;&amp;&#39;')
})

t.test('the job board: progress, rate, ETA, one info line per finished fetch, hits at debug', async t => {
  const lines: Array<[string, string, LogFields | undefined]> = []
  const log: Logger = {
    error: (m, f) => { lines.push(['error', m, f]) },
    warn: (m, f) => { lines.push(['warn', m, f]) },
    info: (m, f) => { lines.push(['info', m, f]) },
    debug: (m, f) => { lines.push(['debug', m, f]) }
  }
  const board = new JobBoard(log)
  t.teardown(() => { board.stop() })
  const job = new FetchJob('sha256:' + 'cd'.repeat(32))
  board.add(job)
  job.status.size = 1000
  job.status.state = 'fetching'
  job.status.bytes.peer = 250
  t.equal(board.current()[0].percent, 25)
  await new Promise(resolve => setTimeout(resolve, 1100)) // one sample
  job.status.bytes.peer = 500
  await new Promise(resolve => setTimeout(resolve, 1100))
  const v = board.current()[0]
  t.ok(v.rate.peer > 100 && v.rate.peer < 600, `a rate from the samples (${v.rate.peer} B/s)`)
  t.ok(v.etaSeconds != null && v.etaSeconds > 0, `an ETA (${v.etaSeconds ?? '?'} s)`)
  job.status.bytes.peer = 1000
  job.succeed()
  t.same(board.current(), [])
  const listed = board.list()
  t.equal(listed.length, 1)
  t.equal(listed[0].percent, 100)
  t.same(listed[0].rate, { local: 0, peer: 0, origin: 0 }, 'a finished job moves nothing')
  const hit = new FetchJob('sha256:' + 'ef'.repeat(32))
  board.add(hit)
  hit.status.hit = true
  hit.succeed()
  t.same(lines.map(l => [l[0], l[1]]), [['info', 'fetch finished'], ['debug', 'fetch found the image stored']])
  t.same(lines[0][2]?.bytes, { local: 0, peer: 1000, origin: 0 }, 'the line has the bytes by source')
  t.equal(board.list()[0].ref, hit.status.ref, 'newest first')
})

t.test('throughput keeps two minutes, one bucket a second', async t => {
  const tp = new Throughput()
  const now = 1_000_000_000
  tp.add('peer', 100, now - 5000)
  tp.add('peer', 50, now - 5000)
  tp.add('served', 7, now - 2000)
  tp.add('origin', 1, now - (THROUGHPUT_SECONDS + 10) * 1000)
  const s = tp.series(now)
  t.equal(s.length, THROUGHPUT_SECONDS)
  t.equal(s.find(p => p.t === now / 1000 - 5)?.peer, 150)
  t.equal(s.find(p => p.t === now / 1000 - 2)?.served, 7)
  t.equal(s.reduce((n, p) => n + p.origin, 0), 0, 'older than the window: gone')
})
