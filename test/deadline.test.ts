import t from 'tap'
import { deadline, withDeadline } from '../src/util/deadline.js'

const gc = (globalThis as { gc?: () => void }).gc

t.test('a deadline fires after a garbage collection, where AbortSignal.any of a timeout may not', async t => {
  const parent = new AbortController()
  const d = deadline(150, parent.signal)
  let fired = false
  d.signal.addEventListener('abort', () => { fired = true })
  await new Promise(resolve => setTimeout(resolve, 20))
  // Without --expose-gc, allocate until V8 collects on its own.
  if (gc != null) gc()
  else for (let i = 0; i < 200; i++) new Array(100_000).fill(i)
  await new Promise(resolve => setTimeout(resolve, 400))
  t.ok(fired, 'the deadline fired')
  t.equal((d.signal.reason as DOMException).name, 'TimeoutError')
  d.clear()
})

t.test('the parent aborts it with its reason, and clear() lets the parent go', async t => {
  const parent = new AbortController()
  const d = deadline(60_000, parent.signal)
  parent.abort(new Error('stopping'))
  t.ok(d.signal.aborted)
  t.equal((d.signal.reason as Error).message, 'stopping')
  d.clear()
  const already = deadline(60_000, parent.signal)
  t.ok(already.signal.aborted, 'an aborted parent aborts it at once')
  already.clear()
})

t.test('withDeadline clears its timer when the work ends', async t => {
  const started = Date.now()
  t.equal(await withDeadline(60_000, undefined, async () => 7), 7)
  await t.rejects(withDeadline(50, undefined, async signal => await new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => { reject(signal.reason) })
  })), { name: 'TimeoutError' })
  t.ok(Date.now() - started < 30_000, 'nothing waited for the 60 s timer')
})
