import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import type { DaemonInfo } from '../src/daemon/daemon-file.js'
import { BIN, runCli, tempDir } from './helpers/cli.js'

t.test('a node listening beyond loopback with neither --swarm-key nor --allow-peer refuses to start', async t => {
  const data = join(await tempDir(t), 'data')
  const res = await runCli(['daemon', '--data', data, '--listen', '/ip4/0.0.0.0/tcp/0', '--api', '127.0.0.1:0', '--log-level', 'warn'], { timeoutMs: 60_000 })
  t.equal(res.code, 2, 'exits with the usage code')
  const lines = res.stderr.trim().split('\n')
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], /^imgswarm daemon: listening on \/ip4\/0\.0\.0\.0\/tcp\/0 with neither --swarm-key nor --allow-peer .*--open/, 'saying why and what to give')
})

/**
 * With --open, a plain-HTTP API on 0.0.0.0 and a module preloaded that, once the daemon's last-resort
 * handlers are in place, throws from a timer and leaves a rejection unhandled: the daemon starts, warns
 * of both exposures, logs both faults and keeps answering.
 */
t.test('--open starts, warns of the open swarm and the clear-text token, and the last resort keeps it up', async t => {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const fault = join(dir, 'fault.mjs')
  await writeFile(fault, [
    'const armed = setInterval(() => {',
    "  if (process.listenerCount('uncaughtException') === 0 || process.listenerCount('unhandledRejection') === 0) return",
    '  clearInterval(armed)',
    "  setTimeout(() => { throw new Error('thrown by the test from a timer') }, 200)",
    "  setTimeout(() => { void Promise.reject(new Error('rejected by the test, unhandled')) }, 300)",
    '}, 20)',
    'armed.unref()',
    ''
  ].join('\n'))
  const child = spawn(BIN, ['daemon', '--data', data, '--listen', '/ip4/0.0.0.0/tcp/0', '--open', '--api', '0.0.0.0:0', '--api-token-file', join(dir, 'token'), '--log-level', 'warn'], {
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(fault).href}` },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', d => { stderr += d })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  t.teardown(() => { if (child.exitCode == null) child.kill('SIGKILL') })

  const logged = (): Array<{ level: string, msg: string, err?: string }> => stderr.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l))
  let info: DaemonInfo | undefined
  for (const until = Date.now() + 60_000; Date.now() < until && child.exitCode == null;) {
    info ??= await readFile(join(data, 'daemon.json'), 'utf8').then(text => JSON.parse(text) as DaemonInfo, () => undefined)
    if (info != null && logged().filter(e => e.level === 'error').length >= 2) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.equal(child.exitCode, null, 'the daemon is still running')
  t.ok(info, 'it started (daemon.json)')
  const entries = logged()
  t.ok(entries.some(e => e.level === 'warn' && /^--open: no --swarm-key and no --allow-peer/.test(e.msg)), 'warns that any host may read its images')
  t.ok(entries.some(e => e.level === 'warn' && /over plain HTTP: its token travels in clear/.test(e.msg)), 'warns that the API token travels in clear')
  const faults = entries.filter(e => e.msg === 'unexpected error; the daemon carries on').map(e => e.err)
  t.same(faults.sort(), ['rejected by the test, unhandled', 'thrown by the test from a timer'], 'both faults logged by the last resort')

  const port = /:(\d+)$/.exec(info?.api ?? '')?.[1]
  const node = await fetch(`http://127.0.0.1:${port ?? 0}/v1/node`)
  t.equal(node.status, 200, 'and it still answers')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'it stops cleanly')
})
