import t from 'tap'
import { Lifecycle } from '../src/node/lifecycle.js'

t.test('parts start in the order built and stop in reverse; a failing stop is logged and the rest still stop', async t => {
  const seen: string[] = []
  const warnings: string[] = []
  const log = { debug: () => {}, info: () => {}, warn: (msg: string) => { warnings.push(msg) }, error: () => {} }
  const parts = new Lifecycle(log as any)
  parts.add('store', { stop: () => { seen.push('stop store') } })
  parts.add('peer', { start: () => { seen.push('start peer') }, stop: async () => { seen.push('stop peer'); throw new Error('boom') } })
  parts.add('api', { start: async () => { seen.push('start api') }, stop: () => { seen.push('stop api') } })
  await parts.start()
  await Promise.all([parts.stop(), parts.stop()])
  t.same(seen, ['start peer', 'start api', 'stop api', 'stop peer', 'stop store'], 'each stopped once, last built first')
  t.same(warnings, ['peer stop failed'])
})
