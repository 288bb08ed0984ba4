import t from 'tap'
import { AheadBuffer } from '../src/fetch/ahead-buffer.js'

const chunk = (n: number): Uint8Array => new Uint8Array(n)

t.test('a full buffer keeps the chunks nearest the reader', async t => {
  const ahead = new AheadBuffer(300)
  // Far chunks arrive first (parallel requests), then the near ones the reader needs next.
  for (const i of [10, 11, 12]) ahead.offer(i, chunk(100), 0)
  ahead.offer(1, chunk(100), 0)
  ahead.offer(2, chunk(100), 0)
  t.ok(ahead.has(1) && ahead.has(2) && ahead.has(10), 'the two nearest displaced the two farthest')
  t.notOk(ahead.has(11) || ahead.has(12))
  ahead.offer(20, chunk(100), 0)
  t.notOk(ahead.has(20), 'a chunk farther than everything held is not taken when full')
  t.equal(ahead.bytes, 300, 'never past the limit')
})

t.test("the chunk at the reader's position is always taken", async t => {
  const ahead = new AheadBuffer(100)
  ahead.offer(5, chunk(100), 0)
  ahead.offer(0, chunk(250), 0)
  t.ok(ahead.has(0), 'taken even though it alone is larger than the limit')
  t.notOk(ahead.has(5), 'what was held was displaced for it')
  t.equal(ahead.take(0)?.length, 250)
  t.equal(ahead.bytes, 0)
  t.equal(ahead.take(0), undefined, 'taken once')
})

t.test('chunks behind the reader are refused and forgotten', async t => {
  const ahead = new AheadBuffer(1000)
  ahead.offer(3, chunk(10), 4)
  t.notOk(ahead.has(3), 'behind the position')
  for (const i of [4, 5, 6, 7]) ahead.offer(i, chunk(10), 4)
  ahead.offer(5, chunk(10), 4)
  t.equal(ahead.bytes, 40, 'a chunk offered twice is held once')
  ahead.dropBefore(6)
  t.notOk(ahead.has(4) || ahead.has(5))
  t.ok(ahead.has(6) && ahead.has(7))
  t.equal(ahead.bytes, 20)
})
