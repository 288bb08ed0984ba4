import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { rateLimitedOrigin } from '../src/origin/rate-limited-origin.js'
import { BIN, tempDir } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { originWith, startDaemon } from './helpers/daemons.js'
import { until } from './helpers/swarm.js'

const MiB = 1024 * 1024

t.test('Ctrl-C of get says it was interrupted (not that the daemon aborted) and exits 130', async t => {
  const published = await originWith(t, [seededBytes(8 * MiB, 'interrupt')])
  // 1 MiB/s: the fetch is still running when the signal comes.
  const d = await startDaemon(t, { origin: rateLimitedOrigin(published.origin, MiB) })
  const out = await tempDir(t)
  const child = spawn(BIN, ['get', published.refs[0], '-o', join(out, 'disk.raw')], { env: { ...process.env, IMGSWARM_DATA: d.dir }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', s => { stderr += s })
  const closed = new Promise<number | null>(resolve => child.on('close', code => { resolve(code) }))
  t.teardown(() => { child.kill('SIGKILL') })
  await until('the image is on its way', () => d.daemon.jobs.current().some(j => j.bytes.origin > 0), 20_000)
  await new Promise(resolve => setTimeout(resolve, 300))
  child.kill('SIGINT')
  t.equal(await closed, 130, 'exit 130, as for any command ended by SIGINT')
  t.match(stderr, /^imgswarm get: interrupted$/m, 'one line that says so')
  t.notMatch(stderr, /daemon aborted|cannot reach/, 'nothing blamed on the daemon')
  t.same((await readdir(out)).filter(n => !n.startsWith('.')), [], 'no file written')
  t.same((await readdir(out)), [], 'and no temporary file left')
})
