import { spawn } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { BIN, tempDir } from './helpers/cli.js'

/** Starts `imgswarm daemon` under `umask 000`, waits for its daemon.json, and stops it at teardown. */
async function daemonUnderUmask000 (t: Parameters<typeof tempDir>[0], data: string): Promise<void> {
  const child = spawn('sh', ['-c', 'umask 000; exec "$0" "$@"', BIN, 'daemon', '--data', data, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `unix:${join(data, 'api.sock')}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] })
  t.teardown(async () => {
    if (child.exitCode == null) {
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('exit', resolve))
    }
  })
  for (const until = Date.now() + 30_000; Date.now() < until;) {
    if (await readFile(join(data, 'daemon.json'), 'utf8').then(() => true, () => false)) return
    if (child.exitCode != null) throw new Error(`the daemon exited with ${child.exitCode}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error('the daemon did not start within 30 s')
}

t.test('under umask 000 the daemon still keeps its files private', async t => {
  const data = join(await tempDir(t), 'data')
  await daemonUnderUmask000(t, data)
  const mode = async (p: string): Promise<string> => ((await stat(join(data, p))).mode & 0o777).toString(8)
  t.equal(await mode('.'), '750', 'data dir 0750')
  t.equal(await mode('db'), '700', 'db/ 0700')
  t.equal(await mode('peer.key'), '600', 'peer key 0600')
  t.equal(await mode('api.token'), '640', 'API token 0640')
  t.equal(await mode('daemon.json'), '640', 'daemon.json 0640')
  t.equal(await mode('api.sock'), '660', 'API socket 0660')
})
