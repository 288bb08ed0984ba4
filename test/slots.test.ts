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

t.test('waiters that come first go ahead of the others, in their own order', async t => {
  const slots = new Slots(1)
  const release = await slots.acquire()
  const order: string[] = []
  const take = (name: string, first: boolean): Promise<void> => slots.acquire(undefined, first).then(r => { order.push(name); r() })
  const all = [take('background 1', false), take('background 2', false), take('urgent 1', true), take('urgent 2', true)]
  release()
  await Promise.all(all)
  t.same(order, ['urgent 1', 'urgent 2', 'background 1', 'background 2'])
  t.ok(slots.idle)
})

t.test('an aborted first waiter leaves the order of the others intact', async t => {
  const slots = new Slots(1)
  const release = await slots.acquire()
  const order: string[] = []
  const gone = new AbortController()
  const lost = slots.acquire(gone.signal, true)
  const b = slots.acquire(undefined, false).then(r => { order.push('background'); r() })
  const u = slots.acquire(undefined, true).then(r => { order.push('urgent'); r() })
  gone.abort(new Error('left'))
  await t.rejects(lost, { message: 'left' })
  const u2 = slots.acquire(undefined, true).then(r => { order.push('urgent 2'); r() })
  release()
  await Promise.all([b, u, u2])
  t.same(order, ['urgent', 'urgent 2', 'background'])
})
