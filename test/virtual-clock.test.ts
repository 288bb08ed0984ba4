import t from 'tap'
import { realClock } from '../src/fetch/clock.js'
import { HaveFeed } from '../src/fetch/have-feeds.js'
import { VirtualClock } from '../src/testing/virtual-clock.js'

t.test('timers fire in due order once the promises before them settle; cleared ones never', async t => {
  const clock = new VirtualClock()
  const seen: string[] = []
  clock.setTimer(() => seen.push(`b@${clock.now()}`), 20)
  clock.setTimer(() => seen.push(`a@${clock.now()}`), 10)
  const gone = clock.setTimer(() => seen.push('never'), 15)
  clock.clearTimer(gone)
  const work = (async () => {
    await clock.sleep(5)
    seen.push(`slept@${clock.now()}`)
    await clock.sleep(100)
    return clock.now()
  })()
  t.equal(await clock.run(work), 105)
  t.same(seen, ['slept@5', 'a@10', 'b@20'])
})

t.test('a sleep ends early on abort; a deadlock is reported, not hung', async t => {
  const clock = new VirtualClock()
  const c = new AbortController()
  clock.setTimer(() => { c.abort() }, 3)
  await clock.run(clock.sleep(60_000, c.signal))
  t.equal(clock.now(), 3)
  await t.rejects(clock.run(new Promise(() => {})), /nothing is scheduled/)
})

t.test('a have-feed waits in virtual time: an hour of nextChange takes no real time', async t => {
  const clock = new VirtualClock()
  const feed = new HaveFeed('cid', 8, new Uint8Array(1), clock)
  const started = realClock.now()
  await clock.run(feed.nextChange(3_600_000))
  t.equal(clock.now(), 3_600_000)
  t.ok(realClock.now() - started < 1000)
})
