/**
 * `npm run soak -- [--minutes M] [--nodes N] [--seed K] [--json]`: a cluster under faults, bounded.
 *
 * Starts `imgswarm cluster up` (network namespaces with `--netns` links when root can make them, else
 * 127.0.0.1) with an HTTP origin holding a set of images (pairs that share most chunks), and while
 * every node fetches a stream of those images through its API, at random (seeded): SIGKILLs a node
 * and restarts it, stops and restarts the origin server, takes a node's link down and up again. It
 * checks what an operator needs to hold: every image that becomes available has the right sha256, no
 * daemon dies that the soak did not kill, resident memory and open descriptors stay flat (the first
 * node is never killed, so at least one daemon's whole run is judged), and at the end `verify` passes
 * on every store. Exit 0 only when all of that held; the report names every
 * violation. Defaults: 5 minutes, 4 nodes, 6 images of 8 MiB, seed 1.
 */
import { createHash } from 'node:crypto'
import { readFile, readdir, rm, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Writable } from 'node:stream'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { clusterDown, clusterStatus, clusterUp } from '../src/cluster/cluster.js'
import { readState } from '../src/cluster/cluster-state.js'
import { canMakeNamespaces, run } from '../src/cluster/netns.js'
import { spawnDetached } from '../src/cluster/processes.js'
import { LocalNode } from '../src/local-node.js'
import { openOrigin } from '../src/origin/open-origin.js'
import { publishImage } from '../src/publish.js'
import { MiB, prng, seededStream } from './util.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    nodes: { type: 'string', default: '4' },
    images: { type: 'string', default: '6' },
    'image-mib': { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false }
  }
})
const MINUTES = Number(values.minutes)
const NODES = Number(values.nodes)
const IMAGES = Number(values.images)
const IMAGE_BYTES = Number(values['image-mib']) * MiB
const random = prng(Number(values.seed))
if (!(MINUTES > 0 && MINUTES <= 240) || !(NODES >= 2 && NODES <= 16) || !(IMAGES >= 2 && IMAGES <= 64)) {
  process.stderr.write('soak: --minutes 0–240, --nodes 2–16, --images 2–64\n')
  process.exit(2)
}
const log = (line: string): void => { if (!values.json) process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`) }
/** How often each daemon's memory and descriptors are read. */
const SAMPLE_MS = 3000
/** A daemon's flatness is judged from this many samples on (about 30 s of life). */
const MIN_SAMPLES = 10
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]

interface Incarnation { node: string, pid: number, started: number, rss: number[], fds: number[], killed: boolean }

const violations: string[] = []
const counts = { fetched: 0, interrupted: 0, kills: 0, originRestarts: 0, linkFlaps: 0, verified: 0 }

/** Images in pairs: the second of each pair is the first with a few bytes changed, so they share chunks. */
function makeImages (): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < IMAGES; i++) {
    if (i % 2 === 1) {
      const v2 = Buffer.from(out[i - 1])
      for (let k = 0; k < 4; k++) v2[Math.floor((k + 0.5) * v2.length / 4)] ^= 0xff
      out.push(v2)
    } else {
      out.push(seededStream(`soak-${String(values.seed)}-${i}`)(IMAGE_BYTES))
    }
  }
  return out
}

async function publishAll (images: Buffer[], dir: string): Promise<string[]> {
  const origin = await openOrigin(`file://${dir}`)
  const scratch = await LocalNode.open()
  try {
    const refs: string[] = []
    for (const [i, bytes] of images.entries()) {
      const { record } = await scratch.importStream((async function * () { yield bytes })(), { meta: { type: 'machine', name: `soak-${i}`, format: 'raw' } })
      await publishImage(scratch.store, record, origin)
      refs.push(record.ref)
    }
    return refs
  } finally {
    await scratch.close()
  }
}

async function procSample (pid: number): Promise<{ rss: number, fds: number } | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined)
  if (status == null) return undefined
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024
  const fds = (await readdir(`/proc/${pid}/fd`).catch(() => [])).length
  return { rss, fds }
}

async function alive (pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return stat != null && !/^\d+ \(.*\) Z/.test(stat)
}

/** sha256 of an image read through a node's API (the client checks it too, and throws on a mismatch). */
async function readBack (client: ApiClient, ref: string): Promise<string> {
  const hash = createHash('sha256')
  await client.export(ref, new Writable({ write (chunk, _e, cb) { hash.update(chunk as Buffer); cb() } }))
  return `sha256:${hash.digest('hex')}`
}

async function main (): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'imgswarm-soak-'))
  const originDir = join(work, 'origin')
  const clusterDir = join(work, 'cluster')
  const netns = process.getuid?.() === 0 && (await canMakeNamespaces()).ok
  const deadline = Date.now() + MINUTES * 60_000
  let stopping = false
  /** Processes the soak started itself (restarts): `cluster down` may not know them, so they are stopped here too. */
  const spawned: number[] = []
  let originPid: number | undefined
  try {
    log(`publishing ${IMAGES} images of ${IMAGE_BYTES / MiB} MiB`)
    const refs = await publishAll(makeImages(), originDir)
    log(`cluster up: ${NODES} nodes, ${netns ? 'network namespaces' : '127.0.0.1'}`)
    const info = await clusterUp({ nodes: NODES, netns, rate: netns ? '1gbit' : undefined, originDir, dir: clusterDir, logLevel: 'warn' })
    const state = (await readState(clusterDir))!
    const clients = new Map(info.nodes.map(n => [n.name, new ApiClient(parseApiAddress(n.api))]))
    // Never SIGKILLed: a short run could otherwise kill every daemon before its memory could be judged.
    const steady = info.nodes[0].name
    const incarnations: Incarnation[] = []
    const current = new Map<string, Incarnation>()
    const down = new Set<string>()
    // Each node's daemon now: the cluster's state file knows only the first ones, the soak the restarts.
    const pids = new Map((await clusterStatus({ dir: clusterDir })).nodes.map(n => [n.name, n.pid]))
    const watch = async (): Promise<void> => {
      for (const [name, pid] of pids) {
        if (pid == null || down.has(name)) continue
        if (current.get(name)?.pid !== pid) {
          const inc: Incarnation = { node: name, pid, started: Date.now(), rss: [], fds: [], killed: false }
          incarnations.push(inc)
          current.set(name, inc)
        }
      }
    }
    await watch()

    // What the cluster does all along: every node fetches images, reads them back, and drops some.
    const fetchLoop = async (name: string): Promise<void> => {
      const client = clients.get(name)!
      while (!stopping) {
        const ref = pick(refs)
        try {
          const res = await client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })
          if (res.ok === true) {
            const got = await readBack(client, ref)
            if (got !== ref) violations.push(`${name}: ${ref} read back as ${got}`)
            counts.fetched++
            if (random() < 0.5) await client.remove(ref, { force: true })
          } else {
            counts.interrupted++
          }
        } catch (err) {
          if ((err as { code?: string }).code === 'IMGSWARM_DIGEST_MISMATCH') violations.push(`${name}: ${ref}: ${(err as Error).message}`)
          counts.interrupted++
          await sleep(500)
        }
      }
    }

    // The faults, one at a time at random.
    const chaosLoop = async (): Promise<void> => {
      while (Date.now() < deadline - 20_000) {
        await sleep(2000 + random() * 3000)
        const action = random()
        const nodes = [...pids].filter(([name, pid]) => pid != null && !down.has(name) && name !== steady).map(([name, pid]) => ({ name, pid }))
        if (action < 0.4 && nodes.length > 0) {
          const n = pick(nodes)
          const argv = (await readFile(`/proc/${n.pid!}/cmdline`, 'utf8')).split('\0').filter(s => s !== '')
          const inc = current.get(n.name)
          if (inc != null) inc.killed = true
          down.add(n.name)
          process.kill(n.pid!, 'SIGKILL')
          counts.kills++
          log(`SIGKILL ${n.name} (pid ${n.pid!})`)
          await sleep(1000 + random() * 3000)
          const node = state.nodes.find(x => x.name === n.name)!
          // `ip netns exec` execs the daemon: the pid spawned is the daemon's.
          const { pid } = await spawnDetached(node.netns != null ? ['ip', 'netns', 'exec', node.netns, ...argv] : argv, { log: join(node.data, 'daemon.log'), cwd: node.data, env: process.env })
          spawned.push(pid)
          pids.set(n.name, pid)
          down.delete(n.name)
          log(`restarted ${n.name}`)
        } else if (action < 0.7) {
          originPid ??= (await clusterStatus({ dir: clusterDir })).originServer?.pid ?? undefined
          const pid = originPid
          if (pid == null || !await alive(pid)) continue
          const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(s => s !== '')
          process.kill(pid, 'SIGKILL')
          counts.originRestarts++
          log('origin stopped')
          await sleep(2000 + random() * 4000)
          const originNs = netns ? `imgswarm-${state.id}-origin` : undefined
          originPid = (await spawnDetached(originNs != null ? ['ip', 'netns', 'exec', originNs, ...argv] : argv, { log: join(clusterDir, 'origin.log'), cwd: clusterDir, env: process.env })).pid
          spawned.push(originPid)
          log('origin started')
        } else if (netns) {
          const k = Math.floor(random() * NODES)
          const link = `isw${state.id}h${k}`
          await run('ip', ['link', 'set', link, 'down'])
          counts.linkFlaps++
          log(`link of node${k} down`)
          await sleep(1000 + random() * 4000)
          await run('ip', ['link', 'set', link, 'up'])
          log(`link of node${k} up`)
        }
      }
    }

    // Every SAMPLE_MS: memory and descriptors of each live daemon, and any death the soak did not cause.
    const sampleLoop = async (): Promise<void> => {
      while (!stopping) {
        await watch()
        for (const inc of current.values()) {
          if (down.has(inc.node) || inc.killed) continue
          const s = await procSample(inc.pid)
          if (s == null || !await alive(inc.pid)) {
            if (!inc.killed && !down.has(inc.node)) {
              const node = state.nodes.find(x => x.name === inc.node)!
              const last = (await readFile(join(node.data, 'daemon.log'), 'utf8').catch(() => '')).trim().split('\n').pop() ?? ''
              violations.push(`${inc.node} (pid ${inc.pid}) died unexpectedly: ${last.slice(0, 300)}`)
              inc.killed = true
            }
            continue
          }
          inc.rss.push(s.rss)
          inc.fds.push(s.fds)
        }
        await sleep(SAMPLE_MS)
      }
    }

    const sampler = sampleLoop()
    const fetchers = info.nodes.map(async n => { await fetchLoop(n.name) })
    await chaosLoop()
    while (Date.now() < deadline) await sleep(1000)
    stopping = true
    await Promise.all([...fetchers, sampler])

    // Every node up and healthy again, then every store checked chunk by chunk.
    if (netns) for (let k = 0; k < NODES; k++) await run('ip', ['link', 'set', `isw${state.id}h${k}`, 'up']).catch(() => '')
    for (const [name, client] of clients) {
      const until = Date.now() + 60_000
      let healthy = false
      while (!healthy && Date.now() < until) {
        healthy = await client.call('GET', '/healthz').then(() => true, () => false)
        if (!healthy) await sleep(500)
      }
      if (!healthy) { violations.push(`${name} did not answer /healthz after the soak`); continue }
      // Every image the node holds as available is re-read chunk by chunk (failed ones were cut by faults).
      let bad = 0
      for (const r of (await client.list()).filter(r => r.state === 'available')) {
        const report = await client.verify(r.ref)
        if (report.problems.length > 0) {
          bad++
          violations.push(`${name}: verify of ${r.ref} found ${report.problems.length} problems: ${JSON.stringify(report.problems.slice(0, 3))}`)
        }
      }
      if (bad === 0) counts.verified++
    }

    // Flat: over each daemon's life, the last third's peak within 1.5× (+32 MB) of the middle third's; fds within +16.
    const growth: Array<{ node: string, pid: number, samples: number, rssMB: [number, number], fds: [number, number] }> = []
    for (const inc of incarnations) {
      const n = inc.rss.length
      if (n < MIN_SAMPLES) continue
      const mid = inc.rss.slice(Math.floor(n / 3), Math.floor(2 * n / 3))
      const end = inc.rss.slice(Math.floor(2 * n / 3))
      const midFd = inc.fds.slice(Math.floor(n / 3), Math.floor(2 * n / 3))
      const endFd = inc.fds.slice(Math.floor(2 * n / 3))
      const row = { node: inc.node, pid: inc.pid, samples: n, rssMB: [Math.max(...mid) / 1e6, Math.max(...end) / 1e6] as [number, number], fds: [Math.max(...midFd), Math.max(...endFd)] as [number, number] }
      growth.push(row)
      if (row.rssMB[1] > row.rssMB[0] * 1.5 + 32) violations.push(`${inc.node} (pid ${inc.pid}): resident memory grew from ${row.rssMB[0].toFixed(0)} MB to ${row.rssMB[1].toFixed(0)} MB`)
      if (row.fds[1] > row.fds[0] + 16) violations.push(`${inc.node} (pid ${inc.pid}): open descriptors grew from ${row.fds[0]} to ${row.fds[1]}`)
    }

    if (growth.length === 0) violations.push(`no daemon lived ${MIN_SAMPLES} samples (${MIN_SAMPLES * SAMPLE_MS / 1000} s): memory and descriptors were not checked`)
    const report = { ok: violations.length === 0, minutes: MINUTES, nodes: NODES, netns, images: IMAGES, imageBytes: IMAGE_BYTES, seed: Number(values.seed), ...counts, growth, violations }
    if (values.json) process.stdout.write(JSON.stringify(report) + '\n')
    else {
      log(`fetched and checked ${counts.fetched} images (${counts.interrupted} attempts cut by faults); ${counts.kills} kills, ${counts.originRestarts} origin restarts, ${counts.linkFlaps} link flaps; verify passed on ${counts.verified}/${NODES} stores`)
      for (const g of growth) log(`${g.node} pid ${g.pid}: RSS peak ${g.rssMB[0].toFixed(0)} → ${g.rssMB[1].toFixed(0)} MB, fds ${g.fds[0]} → ${g.fds[1]} (${g.samples} samples)`)
      for (const v of violations) log(`VIOLATION: ${v}`)
      log(violations.length === 0 ? 'soak passed' : `soak FAILED: ${violations.length} violations`)
    }
    process.exitCode = violations.length === 0 ? 0 : 1
  } finally {
    stopping = true
    for (const pid of spawned) { try { process.kill(pid, 'SIGKILL') } catch {} }
    await clusterDown({ dir: clusterDir }).catch(err => { process.stderr.write(`soak: cluster down failed: ${(err as Error).message}\n`) })
    await rm(work, { recursive: true, force: true })
  }
}

main().catch(err => {
  process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
