import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { BIN, runCli, tempDir } from './helpers/cli.js'
import { clusterStatus, clusterUp, type ClusterUpOptions } from '../src/cluster/cluster.js'
import { alive, clusterStatus as statusJson, clusterUp as upJson, leftovers } from './helpers/cluster.js'
import { seededBytes, sha256Ref } from './helpers/data.js'
import { originWith } from './helpers/daemons.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

t.test('a loopback cluster of three with an HTTP origin: up, import on node0, get on node2, status, a killed node, down twice', async t => {
  const dir = join(await tempDir(t, 'isw-cl-'), 'c')
  const published = seededBytes(3 * 1024 * 1024 + 1, 'cluster-origin')
  const { url: originUrl, refs: [publishedRef] } = await originWith(t, [published])
  const { result, info } = await upJson(t, dir, ['--nodes', '3', '--origin-dir', fileURLToPath(originUrl)])
  t.equal(result.code, 0, result.stderr)
  if (info == null) return
  t.equal(info.dir, dir)
  t.match(info.origin, /^http:\/\/127\.0\.0\.1:\d+$/, 'the origin server listens on loopback')
  t.equal(info.nodes.length, 3)
  info.nodes.forEach((n, k) => {
    t.equal(n.name, `node${k}`)
    t.equal(n.api, `unix:${dir}/node${k}/api.sock`, 'the API is a unix socket in the cluster dir')
    t.match(n.peerId, /^12D3KooW/)
    t.match(n.multiaddrs[0], new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${n.peerId}$`))
  })

  const bytes = seededBytes(6 * 1024 * 1024 + 17, 'cluster')
  const file = join(dir, '..', 'image')
  await writeFile(file, bytes)
  const imported = await runCli(['import', file, '-q'], { env: { IMGSWARM_API: info.nodes[0].api } })
  t.equal(imported.code, 0, imported.stderr)
  const ref = imported.stdout.trim()
  t.equal(ref, sha256Ref(bytes))
  const out = join(dir, '..', 'got')
  const got = await runCli(['get', ref, '-o', out, '-q'], { env: { IMGSWARM_API: info.nodes[2].api } })
  t.equal(got.code, 0, got.stderr)
  t.ok((await readFile(out)).equals(bytes), 'node2 wrote the exact bytes node0 holds')

  const fromOrigin = await new ApiClient(parseApiAddress(info.nodes[1].api)).call<any>('POST', '/v1/fetch?wait=true', { refs: [publishedRef] })
  t.equal(fromOrigin.ok, true, JSON.stringify(fromOrigin.images[0].error))
  t.ok(fromOrigin.images[0].bytes.origin >= published.length, 'node1 read the published image from the cluster\'s origin server')

  const status = await statusJson(dir)
  t.match(status, { dir, mode: 'loopback', origin: info.origin, complete: true, originServer: { running: true } })
  t.same(status.nodes.map((n: any) => [n.name, n.state, n.peers, n.images]), [['node0', 'ready', 2, 1], ['node1', 'ready', 2, 1], ['node2', 'ready', 2, 1]])
  const text = await runCli(['cluster', 'status', '--dir', dir])
  t.equal(text.code, 0, text.stderr)
  for (const n of info.nodes) t.match(text.stdout, new RegExp(`${n.name}\\s+ready\\s+\\d+\\s+2\\s+1\\s+${n.api}`), `status lists ${n.name}`)

  const pids: number[] = status.nodes.map((n: any) => n.pid)
  process.kill(pids[1], 'SIGKILL')
  for (let i = 0; i < 100 && alive(pids[1]); i++) await sleep(50)
  t.equal((await statusJson(dir)).nodes[1].state, 'down', 'status shows the killed node down')

  const down = await runCli(['cluster', 'down', '--dir', dir])
  t.equal(down.code, 0, down.stderr)
  t.match(down.stdout, /removed the cluster in .*: 3 processes/, 'two nodes and the origin server were still running')
  t.same(await leftovers(dir), { processes: [], namespaces: [], links: [], dirExists: false }, 'no process and no file is left')
  for (const pid of pids) t.notOk(alive(pid), `pid ${pid} is gone`)
  const again = await runCli(['cluster', 'down', '--dir', dir])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /nothing to remove/)
})

t.test('an up killed half way: down still removes everything it made', async t => {
  const dir = join(await tempDir(t, 'isw-cl-'), 'c')
  t.teardown(async () => { await runCli(['cluster', 'down', '--dir', dir]) })
  const up = spawn(BIN, ['cluster', 'up', '--nodes', '3', '--dir', dir, '--json'], { stdio: 'ignore' })
  // Kill it once it has started daemons (their pids are in the state file) but before they are all connected.
  let started = false
  for (let i = 0; i < 400 && !started; i++) {
    await sleep(25)
    const state = await readFile(join(dir, 'cluster.json'), 'utf8').then(s => JSON.parse(s), () => undefined)
    started = state?.resources.some((r: any) => r.kind === 'process' && r.pid != null) === true
  }
  t.ok(started, 'up started a daemon')
  up.kill('SIGKILL')
  await new Promise(resolve => up.once('exit', resolve))
  await sleep(300)
  const before = await leftovers(dir)
  t.ok(before.dirExists, 'the crash left the cluster behind')
  const down = await runCli(['cluster', 'down', '--dir', dir])
  t.equal(down.code, 0, down.stderr)
  t.same(await leftovers(dir), { processes: [], namespaces: [], links: [], dirExists: false }, 'nothing is left')
})

t.test('settings that cannot work fail at once, with one clear reason and nothing made', async t => {
  const base = await tempDir(t, 'isw-cl-')
  const dir = join(base, 'c')
  const cases: Array<[Partial<ClusterUpOptions>, RegExp]> = [
    [{ nodes: 0 }, /--nodes must be a whole number from 1/],
    [{ nodes: 2, rate: '100mbit' }, /need --netns/],
    [{ nodes: 2, netns: true, rate: 'fast' }, /invalid rate "fast"/],
    [{ nodes: 2, netns: true, rate: '1bit' }, /below 8kbit/],
    [{ nodes: 2, netns: true, delay: '5 ms' }, /invalid delay/],
    [{ nodes: 2, origin: 'file:///x', originDir: base }, /not both/],
    [{ nodes: 2, originDir: join(base, 'none') }, /is not a directory/],
    [{ nodes: 2, dir: `/tmp/${'x'.repeat(100)}` }, /too long/]
  ]
  for (const [options, message] of cases) {
    await t.rejects(clusterUp({ nodes: 1, dir, ...options }), { code: 'IMGSWARM_USAGE', message }, JSON.stringify(options))
  }
  await writeFile(join(base, 'stray'), 'x')
  await t.rejects(clusterUp({ nodes: 1, dir: base }), { code: 'IMGSWARM_CLUSTER', message: /is not empty/ })
  t.same((await leftovers(dir)).dirExists, false, 'no cluster dir was made')
  await t.rejects(clusterStatus({ dir }), { code: 'IMGSWARM_CLUSTER', message: /no cluster in/ })

  // The command line: exit 2 and one line for usage, 1 for a failure, 0 for a down with nothing to do.
  const cli: Array<[string[], number, RegExp]> = [
    [['cluster', 'up', '--dir', dir], 2, /^imgswarm cluster: cluster up needs --nodes N$/],
    [['cluster', 'status', '--nodes', '3', '--dir', dir], 2, /a flag of cluster up/],
    [['cluster', 'status', '--dir', dir], 1, /no cluster in/]
  ]
  for (const [args, code, message] of cli) {
    const res = await runCli(args)
    t.equal(res.code, code, `${args.join(' ')} exits ${code}`)
    t.match(res.stderr.trim(), message)
    t.equal(res.stderr.trim().split('\n').length, 1, 'one line')
  }
  const down = await runCli(['cluster', 'down', '--dir', dir])
  t.equal(down.code, 0, 'down with no cluster succeeds')
  t.match(down.stdout, /nothing to remove/)
})
