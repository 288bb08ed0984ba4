/**
 * `npm run bench:swarm` (root): N nodes in network namespaces with rate-limited links all ask for the
 * same new image at the same moment. For N = 1, 2, 4, 8, 16 it reports the time until the last node
 * holds a verified image, the median, the origin's egress and the nodes' CPU, next to the baseline in
 * the same testbed: every node downloading the image from the origin HTTP server with curl.
 * Settings: IMGSWARM_BENCH_NODES (default 1,2,4,8,16), IMGSWARM_BENCH_MIB (32), IMGSWARM_BENCH_RATE
 * (50mbit, every link both ways, the origin's too), IMGSWARM_BENCH_LOG (the daemons' log level, default
 * warn; each node's log is copied to bench/out/swarm-N-nodeK.log when it is set). Writes
 * bench/out/swarm.dat and, where gnuplot is installed, docs/bench-swarm.png.
 */
import { execFile as execFileCb, execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { encodeManifest } from '../src/chunks/manifest.js'
import { readState } from '../src/cluster/cluster-state.js'
import { clusterDown, clusterUp } from '../src/cluster/cluster.js'
import { LocalNode } from '../src/local-node.js'
import { fileOrigin } from '../src/origin/file-origin.js'
import { GiB, MiB, machine, mdTable, median, seededStream } from './util.js'

const execFile = promisify(execFileCb)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SIZES = (process.env.IMGSWARM_BENCH_NODES ?? '1,2,4,8,16').split(',').map(Number)
const SIZE = Number(process.env.IMGSWARM_BENCH_MIB ?? 32) * MiB
const RATE = process.env.IMGSWARM_BENCH_RATE ?? '50mbit'
const LOG = process.env.IMGSWARM_BENCH_LOG as 'error' | 'warn' | 'info' | 'debug' | undefined

function cpuSeconds (pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

/** Publishes a new random image into an origin directory (the layout `publish --origin file://DIR` writes). */
async function publishNew (dir: string, seed: string): Promise<string> {
  const next = seededStream(seed)
  const node = await LocalNode.open()
  try {
    async function * bytes (): AsyncGenerator<Uint8Array> { for (let off = 0; off < SIZE; off += MiB) yield next(MiB) }
    const { record } = await node.importStream(bytes())
    const origin = fileOrigin(pathToFileURL(dir).href)
    const hex = record.ref.slice(7)
    async function * again (): AsyncGenerator<Uint8Array> {
      const m = await node.store.getManifest(record)
      for (let i = 0; i < m.chunkDigests.length; i += 32 * 64) {
        const digests = []
        for (let j = i; j < Math.min(i + 32 * 64, m.chunkDigests.length); j += 32) digests.push(m.chunkDigests.subarray(j, j + 32))
        for (const c of await node.store.getMany(digests)) yield c.bytes
      }
    }
    await origin.write!(hex, again())
    await origin.writeManifest!(hex, encodeManifest(await node.store.getManifest(record)))
    return record.ref
  } finally {
    await node.close()
  }
}

interface Row { n: number, swarmLast: number, swarmP50: number, originCopies: number, peerCopies: number, cpu: number, baseLast: number, baseP50: number, baseCopies: number }

async function originStats (ns: string, url: string): Promise<{ bytes: number }> {
  const { stdout } = await execFile('ip', ['netns', 'exec', ns, 'curl', '-sS', `${url}/-/stats`])
  return JSON.parse(stdout) as { bytes: number }
}

/** Image bytes a node received from peers, from its own /metrics (imgswarm_fetched_bytes_total{source="peer"}). */
async function peerBytes (client: ApiClient): Promise<number> {
  const res = await client.send('GET', '/metrics')
  let text = ''
  for await (const part of res) text += String(part)
  const m = /^imgswarm_fetched_bytes_total\{source="peer"\} (\S+)$/m.exec(text)
  return m == null ? 0 : Number(m[1])
}

async function runOnce (n: number, work: string): Promise<Row> {
  const originDir = join(work, `origin-${n}`)
  await mkdir(originDir, { recursive: true })
  const ref = await publishNew(originDir, `swarm-${n}-${Date.now()}`)
  const dir = join(work, `cluster-${n}`)
  const info = await clusterUp({ nodes: n, netns: true, rate: RATE, originDir, dir, logLevel: LOG ?? 'warn' })
  try {
    const state = (await readState(dir))!
    const originNs = state.resources.find(r => r.kind === 'netns' && r.name.endsWith('-origin')) as { name: string }
    const pids = state.resources.flatMap(r => r.kind === 'process' && r.name !== 'origin' && r.pid != null ? [r.pid] : [])
    const clients = info.nodes.map(node => new ApiClient(parseApiAddress(node.api)))

    // imgswarm: all nodes at once.
    const before = await originStats(originNs.name, info.origin!)
    const cpu0 = pids.reduce((s, p) => s + cpuSeconds(p), 0)
    const t0 = performance.now()
    const done = await Promise.all(clients.map(async c => {
      const r = await c.call<{ ok: boolean, images: Array<{ error?: string }> }>('POST', '/v1/fetch?wait=true', { refs: [ref] })
      if (!r.ok) throw new Error(`a node failed: ${r.images[0].error ?? '?'}`)
      return (performance.now() - t0) / 1000
    }))
    const cpu = pids.reduce((s, p) => s + cpuSeconds(p), 0) - cpu0
    const after = await originStats(originNs.name, info.origin!)
    const fromPeers = (await Promise.all(clients.map(peerBytes))).reduce((a, b) => a + b, 0)
    // Every node's copy is checked end to end.
    for (const c of clients) {
      const rec = await c.inspect(ref)
      if (rec.state !== 'available') throw new Error('an image is not available')
    }

    // Baseline: every node downloads the whole image from the origin with curl, at once.
    const hex = ref.slice(7)
    const b0 = performance.now()
    const base = await Promise.all(state.nodes.map(async node => {
      await execFile('ip', ['netns', 'exec', node.netns!, 'curl', '-sS', '-o', '/dev/null', `${info.origin!}/sha256/${hex}`])
      return (performance.now() - b0) / 1000
    }))
    return {
      n,
      swarmLast: Math.max(...done),
      swarmP50: median(done),
      originCopies: (after.bytes - before.bytes) / SIZE,
      peerCopies: fromPeers / SIZE,
      cpu,
      baseLast: Math.max(...base),
      baseP50: median(base),
      baseCopies: n
    }
  } finally {
    if (LOG != null) {
      const out = join(ROOT, 'bench', 'out')
      await mkdir(out, { recursive: true })
      const state = await readState(dir)
      for (const [k, node] of (state?.nodes ?? []).entries()) await copyFile(join(node.data, 'daemon.log'), join(out, `swarm-${n}-node${k}.log`)).catch(() => {})
    }
    await clusterDown({ dir })
  }
}

async function main (): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:swarm needs root (network namespaces)')
  const work = await mkdtemp(join(tmpdir(), 'imgswarm-bench-swarm-'))
  const rows: Row[] = []
  try {
    console.log(`# swarm benchmark: ${SIZE / MiB} MiB image, every link ${RATE} both ways; ${machine()}`)
    for (const n of SIZES) {
      rows.push(await runOnce(n, work))
      const r = rows.at(-1)!
      console.error(`N=${n}: imgswarm last ${r.swarmLast.toFixed(1)} s, origin ${r.originCopies.toFixed(2)} copies; baseline last ${r.baseLast.toFixed(1)} s`)
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  const one = rows.find(r => r.n === 1) ?? rows[0]
  console.log(mdTable(
    ['nodes', 'imgswarm: last node s', 'p50 s', 'last / N=1', 'origin egress (copies)', 'received from peers (copies)', 'node CPU s', 'CPU s per node per GiB', 'baseline: last s', 'p50 s', 'last / N=1', 'origin egress (copies)'],
    rows.map(r => [r.n, r.swarmLast.toFixed(1), r.swarmP50.toFixed(1), (r.swarmLast / one.swarmLast).toFixed(2), r.originCopies.toFixed(2), r.peerCopies.toFixed(2), r.cpu.toFixed(1), (r.cpu / r.n / (SIZE / GiB)).toFixed(1), r.baseLast.toFixed(1), r.baseP50.toFixed(1), (r.baseLast / one.baseLast).toFixed(2), r.baseCopies.toFixed(2)])
  ))
  const out = join(ROOT, 'bench', 'out')
  await mkdir(out, { recursive: true })
  const dat = join(out, 'swarm.dat')
  await writeFile(dat, '# nodes swarm_last baseline_last origin_copies\n' + rows.map(r => `${r.n} ${r.swarmLast} ${r.baseLast} ${r.originCopies}`).join('\n') + '\n')
  try {
    execFileSync('gnuplot', ['-e', [
      'set terminal pngcairo size 900,500 noenhanced',
      `set output '${join(ROOT, 'docs', 'bench-swarm.png')}'`,
      `set title 'Time until the last node holds the image (${SIZE / MiB} MiB, ${RATE} links)'`,
      'set xlabel "nodes asking at once"', 'set ylabel "seconds"', 'set logscale x 2', 'set key top left', 'set grid',
      `plot '${dat}' using 1:3 with linespoints title 'baseline: every node curls from the origin', '' using 1:2 with linespoints title 'imgswarm'`
    ].join('; ')])
    console.log('\nplot: docs/bench-swarm.png')
  } catch {
    console.log('\n(no plot: gnuplot is not installed; apt-get install gnuplot-nox)')
  }
}

await main()
