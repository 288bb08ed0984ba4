import t from 'tap'
import { parseApiAddress } from '../src/api/address.js'
import { startApiServer } from '../src/api/server.js'
import { daemonRoutes } from '../src/daemon/daemon.js'
import { DaemonStartingError } from '../src/errors.js'
import { LocalNode } from '../src/local-node.js'
import { tempDir } from './helpers/cli.js'

/**
 * The daemon's API listens before the parts behind it are up (it needs its own address first). A
 * caller that gets in then is told the daemon is starting: never a 500, and nothing logged as a fault.
 */
t.test('a request that reaches the API while the daemon is still starting is answered 503 IMGSWARM_STARTING', async t => {
  const local = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await local.close() })
  const faults: unknown[] = []
  const api = await startApiServer({
    local,
    acquire: async () => { throw new DaemonStartingError() },
    extraRoutes: daemonRoutes(() => undefined)
  }, parseApiAddress('127.0.0.1:0'), { onError: err => { faults.push(err) } })
  t.teardown(async () => { await api.close() })
  const base = `http://127.0.0.1:${(api.address as { port: number }).port}`

  const health = await fetch(`${base}/healthz`)
  t.equal(health.status, 503, '/healthz: 503')
  t.same(await health.json(), { ready: false }, '/healthz: not ready')

  for (const path of ['/v1/node', '/v1/peers', '/metrics']) {
    const res = await fetch(`${base}${path}`)
    t.equal(res.status, 503, `${path}: 503`)
    const body = await res.json() as { error: { code: string, message: string } }
    t.equal(body.error.code, 'IMGSWARM_STARTING', `${path}: the code says why`)
    t.match(body.error.message, /still starting/, `${path}: the message says to retry`)
  }
  t.same(faults, [], 'nothing logged as a fault')
})
