import t from 'tap'
import { Slots } from '../src/util/slots.js'

t.test('at most size holders; waiters in order; an aborted waiter leaves its place', async t => {
  const slots = new Slots(2)
  const a = await slots.acquire()
  const b = await slots.acquire()
  const order: string[] = []
  const c = slots.acquire().then(r => { order.push('c'); return r })
  const gone = new AbortController()
  const d = slots.acquire(gone.signal)
  const e = slots.acquire().then(r => { order.push('e'); return r })
  gone.abort(new Error('left'))
  await t.rejects(d, { message: 'left' })
  a()
  a() // twice gives back one place only
  const releaseC = await c
  t.same(order, ['c'], 'the first waiter got the place, the third still waits')
  b()
  const releaseE = await e
  t.same(order, ['c', 'e'])
  t.notOk(slots.idle)
  releaseC()
  releaseE()
  t.ok(slots.idle, 'every place back')
})
