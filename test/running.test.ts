import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile, symlink, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { BIN, ROOT, runCli, tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { breakingOrigin, metric, originWith, startDaemon } from './helpers/daemons.js'

const run = promisify(execFile)
const UNIT = join(ROOT, 'contrib', 'systemd', 'imgswarm.service')
const DASHBOARD = join(ROOT, 'contrib', 'grafana', 'imgswarm.json')

async function which (program: string): Promise<string | undefined> {
  return await run('sh', ['-c', `command -v ${program}`]).then(r => r.stdout.trim(), () => undefined)
}

/** The unit's ExecStart as arguments (it has no quoting). */
async function execStart (): Promise<string[]> {
  const line = (await readFile(UNIT, 'utf8')).split('\n').find(l => l.startsWith('ExecStart='))
  if (line == null) throw new Error('the unit has no ExecStart')
  return line.slice('ExecStart='.length).trim().split(/\s+/)
}

const analyze = await which('systemd-analyze')

t.test('the systemd unit passes systemd-analyze verify without a warning', { skip: analyze == null ? 'systemd-analyze is not installed (Debian: systemd)' : false }, async t => {
  // verify checks that ExecStart's program exists: point it at this checkout's.
  const dir = await tempDir(t)
  const unit = join(dir, 'imgswarm.service')
  await writeFile(unit, (await readFile(UNIT, 'utf8')).replace('/usr/bin/imgswarm', BIN))
  const { stderr } = await run(analyze!, ['verify', unit])
  t.equal(stderr.trim(), '', 'no warning about the unit')
})

t.test('the unit\'s command line starts a daemon that stops cleanly on SIGTERM', async t => {
  const [program, ...args] = await execStart()
  t.equal(program, '/usr/bin/imgswarm', 'it runs the installed command')
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const key = join(dir, 'swarm.key')
  await writeFile(key, `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`, { mode: 0o600 })
  const group = (await run('id', ['-gn'])).stdout.trim()
  // The unit's own arguments with this test's paths, on loopback.
  const local = args.map(a => a === '/var/lib/imgswarm' ? data : a === '/etc/imgswarm/swarm.key' ? key : a === 'imgswarm' ? group : a)
  t.same(local.filter(a => a.startsWith('--')), ['--data', '--api-group', '--swarm-key'], 'the unit sets the data dir, API group and swarm key')
  const socket = join(dir, 'api.sock')
  const child = spawn(BIN, [...local, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `unix:${socket}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
  t.teardown(async () => { if (child.exitCode == null) { child.kill('SIGKILL'); await exited } })
  let health = ''
  for (const until = Date.now() + 30_000; Date.now() < until && health === '' && child.exitCode == null;) {
    health = await new Promise<string>(resolve => {
      request({ socketPath: socket, path: '/healthz' }, res => {
        let body = ''
        res.on('data', (b: Buffer) => { body += b.toString() }).on('end', () => { resolve(res.statusCode === 200 ? body : '') })
      }).on('error', () => { resolve('') }).end()
    })
    if (health === '') await new Promise(resolve => setTimeout(resolve, 200))
  }
  t.not(health, '', `the daemon answers /healthz (stderr: ${stderr.slice(0, 300)})`)
  const stopped = Date.now()
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM stops it with exit status 0')
  t.ok(Date.now() - stopped < 30_000, 'within the unit\'s TimeoutStopSec')
})

t.test('metrics: build info, process and Node.js metrics, and failed origin calls', async t => {
  const bytes = seededBytes(3 * 1024 * 1024, 'running-origin-errors')
  const { origin } = await originWith(t, [bytes])
  const d = await startDaemon(t, { origin: breakingOrigin(origin, 64 * 1024), config: { maxSize: { bytes: 1024 ** 3 }, highWater: 0.9, lowWater: 0.5 } })
  await t.rejects(d.daemon.fetcher.fetch(sha256Ref(bytes)), 'the origin breaks mid-image: the fetch fails')
  const readErrors = await metric(d.client, 'imgswarm_origin_errors_total', '{op="read",why="other"}')
  t.ok(readErrors >= 1, `the broken read is counted (${readErrors})`)
  t.equal(await metric(d.client, 'imgswarm_origin_errors_total', '{op="stat",why="timeout"}'), 0, 'other series start at 0')
  const version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
  t.equal(await metric(d.client, 'imgswarm_build_info', `{version="${version}",nodejs="${process.versions.node}",store_format="2"}`), 1, 'build info names the version')
  t.ok(await metric(d.client, 'process_cpu_user_seconds_total') > 0, 'process CPU')
  t.ok(await metric(d.client, 'process_resident_memory_bytes') > 0, 'process RSS')
  t.ok(await metric(d.client, 'nodejs_heap_size_used_bytes') > 0, 'Node.js heap')
})

t.test('the Grafana dashboard queries only metrics that a daemon exports', async t => {
  const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as { panels: Array<{ title: string, targets: Array<{ expr: string }> }> }
  const d = await startDaemon(t, { config: { maxSize: { bytes: 1024 ** 3 }, highWater: 0.9, lowWater: 0.5 } })
  await d.client.importStream(streamOf(seededBytes(1024 * 1024, 'running-dashboard')))
  const res = await d.client.send('GET', '/metrics')
  let text = ''
  for await (const piece of res) text += String(piece)
  const exported = new Set(text.split('\n').filter(l => l !== '' && !l.startsWith('#')).map(l => l.split(/[{ ]/)[0]))
  // A histogram has no _bucket lines until it observes a value; its TYPE line names it all the same.
  for (const m of text.matchAll(/^# TYPE (\S+) histogram$/gm)) for (const suffix of ['_bucket', '_sum', '_count']) exported.add(m[1] + suffix)
  const queried = new Set<string>()
  for (const panel of dashboard.panels) {
    t.ok(panel.targets.length > 0, `panel "${panel.title}" has a query`)
    for (const target of panel.targets) for (const m of target.expr.matchAll(/\b(?:imgswarm|process|nodejs)_[a-z0-9_]+/g)) queried.add(m[0])
  }
  t.ok(queried.size >= 20, `the dashboard shows many metrics (${queried.size})`)
  for (const name of queried) t.ok(exported.has(name), `${name} is exported`)
})

t.test('the npm package holds what an installed node runs', async t => {
  const dir = await tempDir(t)
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, '--json'], { cwd: ROOT })
  const [packed] = JSON.parse(stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  const files = new Set(packed.files.map(f => f.path))
  for (const f of ['bin/imgswarm', 'dist/src/cli/main.js', 'contrib/systemd/imgswarm.service', 'contrib/systemd/imgswarm.sysusers', 'contrib/grafana/imgswarm.json', 'README.md']) t.ok(files.has(f), `${f} is packed`)
  t.notOk([...files].some(f => f.startsWith('dist/test/') || f.startsWith('test/') || (f.endsWith('.ts') && !f.endsWith('.d.ts'))), 'no tests or TypeScript sources')
  // Unpacked beside this checkout's dependencies, the packed files alone import and list an image.
  await run('tar', ['-xzf', join(dir, packed.filename), '-C', dir])
  const unpacked = join(dir, 'package')
  await symlink(join(ROOT, 'node_modules'), join(unpacked, 'node_modules'))
  const image = join(dir, 'image.bin')
  const bytes = seededBytes(1024 * 1024, 'running-pack')
  await writeFile(image, bytes)
  const data = join(dir, 'data')
  const imported = await runCli(['import', image], { env: { IMGSWARM_DATA: data }, bin: join(unpacked, 'bin', 'imgswarm') })
  t.equal(imported.code, 0, imported.stderr)
  t.equal(imported.stdout.trim(), sha256Ref(bytes), 'the packed command imports the image')
})
