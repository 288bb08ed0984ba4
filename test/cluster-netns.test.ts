import { spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type tap from 'tap'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { runCli, tempDir } from './helpers/cli.js'
import { alive, clusterId, clusterStatus, clusterUp, leftovers, netnsSkipReason } from './helpers/cluster.js'
import { seededBytes, sha256Ref } from './helpers/data.js'

const skip = netnsSkipReason()
if (skip !== undefined) t.comment(`SKIP network-namespace cluster tests: ${skip}`)

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const MiB = 1024 * 1024
const RATE_BITS = 100e6

function sh (cmd: string, args: string[]): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8' })
  return res.stdout + res.stderr
}

/** Publishes images into a fresh origin dir, as an operator would: `imgswarm publish FILE --origin file://DIR`. */
async function publish (t: Parameters<Parameters<typeof tap.test>[0]>[0], images: Buffer[]): Promise<{ dir: string, refs: string[] }> {
  const base = await tempDir(t, 'isw-pub-')
  const dir = join(base, 'origin')
  const refs: string[] = []
  for (const [i, bytes] of images.entries()) {
    const file = join(base, `image${i}`)
    await writeFile(file, bytes)
    const res = await runCli(['publish', file, '--origin', `file://${dir}`, '--data', join(base, 'data'), '-q'])
    if (res.code !== 0) throw new Error(`publish failed: ${res.stderr}`)
    refs.push(res.stdout.trim())
  }
  return { dir, refs }
}
/** Starts a fetch of `ref` on a node and returns a function that waits (bounded) for its end. */
async function startFetch (client: ApiClient, ref: string): Promise<{ id: string, done: (timeoutMs: number) => Promise<any> }> {
  const started = await client.call<any>('POST', '/v1/fetch', { refs: [ref] })
  return {
    id: started.id,
    done: async timeoutMs => {
      const until = Date.now() + timeoutMs
      for (;;) {
        const s = await client.call<any>('GET', `/v1/fetch/${started.id as string}`)
        if (s.done === true) return s
        if (Date.now() > until) throw new Error(`fetch ${started.id as string} not done after ${timeoutMs} ms: ${JSON.stringify(s)}`)
        await sleep(100)
      }
    }
  }
}

t.test('five nodes in network namespaces with 100mbit links and an HTTP origin: every node gets the image; a node killed mid-swarm; down removes all', { skip: skip ?? false }, async t => {
  const a = seededBytes(16 * MiB + 5, 'netns-a')
  const b = seededBytes(40 * MiB + 3, 'netns-b')
  const { dir: originDir, refs: [refA, refB] } = await publish(t, [a, b])
  t.equal(refA, sha256Ref(a))
  const dir = join(await tempDir(t, 'isw-ns-'), 'c')
  const started = Date.now()
  const { result, info } = await clusterUp(t, dir, ['--nodes', '5', '--netns', '--rate', '100mbit', '--origin-dir', originDir])
  t.equal(result.code, 0, result.stderr)
  if (info == null) return
  t.comment(`cluster up took ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const id = await clusterId(dir)
  t.equal(info.origin, 'http://198.18.0.2:8080', 'the origin server runs in its own namespace')
  info.nodes.forEach((n, k) => {
    t.match(n.multiaddrs[0], new RegExp(`^/ip4/198\\.18\\.1\\.${k + 1}/tcp/4001/p2p/${n.peerId}$`), `${n.name} listens on its own address`)
  })

  // The topology: six namespaces, tbf on both ends of every link, no route out.
  const namespaces = sh('ip', ['netns', 'list']).split('\n').filter(l => l.includes(`imgswarm-${id}-`)).map(l => l.split(' ')[0]).sort()
  t.same(namespaces, [...info.nodes.map(n => `imgswarm-${id}-${n.name}`), `imgswarm-${id}-origin`].sort())
  for (const [link, ns] of [[`isw${id}h0`, `imgswarm-${id}-node0`], [`isw${id}h4`, `imgswarm-${id}-node4`], [`isw${id}ho`, `imgswarm-${id}-origin`]]) {
    t.match(sh('tc', ['qdisc', 'show', 'dev', link]), /qdisc tbf .*rate 100Mbit/, `${link} (bridge side) is limited`)
    t.match(sh('tc', ['-n', ns, 'qdisc', 'show', 'dev', 'eth0']), /qdisc tbf .*rate 100Mbit/, `eth0 in ${ns} is limited`)
    const routes = sh('ip', ['-n', ns, 'route', 'show']).trim()
    t.match(routes, /^198\.18\.0\.0\/15 dev eth0/, `${ns} routes only its bridge`)
    t.notMatch(routes, /default/, `${ns} has no route out`)
  }
  if (spawnSync('curl', ['--version']).status === 0) {
    const out = sh('ip', ['netns', 'exec', `imgswarm-${id}-node3`, 'curl', '-s', '-o', '/dev/null', '-w', '%{speed_download}', `${info.origin}/sha256/${refB.slice(7)}`])
    t.comment(`curl of ${b.length} bytes from the origin into node3: ${(Number(out) * 8 / 1e6).toFixed(1)} Mbit/s (limit 100)`)
  }

  const clients = info.nodes.map(n => new ApiClient(parseApiAddress(n.api)))
  // node0 alone: the image comes from the origin over two 100mbit links; it cannot be faster than the limit.
  let t0 = Date.now()
  const first = await clients[0].call<any>('POST', '/v1/fetch?wait=true', { refs: [refA] })
  const fromOrigin = (Date.now() - t0) / 1000
  t.equal(first.ok, true, JSON.stringify(first.images[0].error))
  t.ok(fromOrigin >= 0.9 * a.length * 8 / RATE_BITS, `node0 took ${fromOrigin.toFixed(2)} s from the origin: the rate limit applies`)
  t.comment(`origin -> node0: ${(a.length * 8 / fromOrigin / 1e6).toFixed(1)} Mbit/s`)
  t0 = Date.now()
  const second = await clients[1].call<any>('POST', '/v1/fetch?wait=true', { refs: [refA] })
  const fromPeer = (Date.now() - t0) / 1000
  t.equal(second.ok, true, JSON.stringify(second.images[0].error))
  t.comment(`node0 -> node1 (peer, bytes ${JSON.stringify(second.images[0].bytes)}): ${(a.length * 8 / fromPeer / 1e6).toFixed(1)} Mbit/s`)
  const rest = await Promise.all(clients.slice(2).map(async c => await c.call<any>('POST', '/v1/fetch?wait=true', { refs: [refA] })))
  for (const r of rest) t.equal(r.ok, true, JSON.stringify(r.images[0].error))
  const outDir = await tempDir(t, 'isw-out-')
  for (const [k, c] of clients.entries()) {
    const out = join(outDir, `a${k}`)
    await c.export(refA, out)
    t.equal(sha256Ref(await readFile(out)), refA, `node${k} holds the image, digest right`)
  }

  // A swarm fetch of a second image on nodes 1-4; node2 is killed in the middle; the others still finish.
  const victim = (await clusterStatus(dir)).nodes[2]
  const fetches = await Promise.all([1, 2, 3, 4].map(async k => await startFetch(clients[k], refB)))
  let mid: any
  for (let i = 0; i < 300; i++) {
    mid = await clients[2].call<any>('GET', `/v1/fetch/${fetches[1].id}`)
    const got = mid.images[0].bytes
    if (mid.done === true || got.local + got.peer + got.origin >= 4 * MiB) break
    await sleep(50)
  }
  process.kill(victim.pid, 'SIGKILL')
  t.equal(mid.done, false, `node2 was still fetching when it was killed (${JSON.stringify(mid.images[0].bytes)})`)
  for (const k of [1, 3, 4]) {
    const s = await fetches[k - 1].done(90_000)
    t.equal(s.ok, true, `node${k} finished without node2: ${JSON.stringify(s.images[0].error ?? s.images[0].bytes)}`)
    const out = join(outDir, `b${k}`)
    await clients[k].export(refB, out)
    t.equal(sha256Ref(await readFile(out)), refB, `node${k}'s copy is right`)
  }
  if (spawnSync('curl', ['--version']).status === 0) {
    const stats = sh('ip', ['netns', 'exec', `imgswarm-${id}-node0`, 'curl', '-s', `${info.origin}/-/stats`])
    t.comment(`the origin served ${stats} (images of ${a.length} and ${b.length} bytes, curl included)`)
  }
  const status = await clusterStatus(dir)
  t.same(status.nodes.map((n: any) => n.state), ['ready', 'ready', 'down', 'ready', 'ready'])
  t.equal(status.originServer.running, true)

  const pids = status.nodes.map((n: any) => n.pid).concat(status.originServer.pid)
  const down = await runCli(['cluster', 'down', '--dir', dir], { timeoutMs: 60_000 })
  t.equal(down.code, 0, down.stderr)
  t.match(down.stdout, /5 processes, 6 namespaces, 7 links/)
  t.same(await leftovers(dir, id), { processes: [], namespaces: [], links: [], dirExists: false }, 'no process, namespace, link or file is left')
  for (const pid of pids) t.notOk(alive(pid), `pid ${pid} is gone`)
  const again = await runCli(['cluster', 'down', '--dir', dir])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /nothing to remove/)
})

t.test('--delay: netem on every link where the kernel has it; otherwise one clear reason, and nothing left behind', { skip: skip ?? false }, async t => {
  const dir = join(await tempDir(t, 'isw-ns-'), 'c')
  t.teardown(async () => { await runCli(['cluster', 'down', '--dir', dir]) })
  // Without --json, up tells its progress on stderr, bridge name (and so the cluster's id) included.
  const result = await runCli(['cluster', 'up', '--dir', dir, '--nodes', '2', '--netns', '--rate', '100mbit', '--delay', '5ms'], { timeoutMs: 120_000 })
  const id = /on bridge isw([0-9a-f]{6})br/.exec(result.stderr)?.[1]
  t.ok(id != null, `up named its bridge: ${result.stderr}`)
  if (result.code !== 0) {
    t.equal(result.code, 1)
    t.match(result.stderr, /netem qdisc \(sch_netem\), which this kernel does not have.*everything it made was removed/)
    t.comment('SKIP delay shaping: this kernel has no netem; checked that up fails cleanly instead')
    t.same(await leftovers(dir, id), { processes: [], namespaces: [], links: [], dirExists: false }, 'nothing is left')
    return
  }
  t.match(sh('tc', ['qdisc', 'show', 'dev', `isw${id}h0`]), /qdisc netem 1: root .*delay 5ms/)
  t.match(sh('tc', ['qdisc', 'show', 'dev', `isw${id}h0`]), /qdisc tbf 10: parent 1:1 .*rate 100Mbit/)
  const down = await runCli(['cluster', 'down', '--dir', dir])
  t.equal(down.code, 0, down.stderr)
  t.same(await leftovers(dir, id), { processes: [], namespaces: [], links: [], dirExists: false })
})
