/**
 * `npm run bench:transfer`: one image from one peer to another over 127.0.0.1, next to what a
 * compute node does today: curl the file from a plain HTTP server to disk, then sha256sum it. Both
 * run in this script, on the same file, at each size; the table gives medians and the ratio, the CPU
 * seconds per GiB of both peers, the receiver's disk writes per image byte (/proc/PID/io), its peak
 * resident size (VmHWM: a fresh pair of daemons per size; beside it the peaks of its anonymous and file-backed
 * parts, sampled every 100 ms) and the time to the first byte of the GET.
 * BENCH_SIZES (MiB, default "512,4096") sets the sizes, BENCH_RUNS the runs per size (default 3 below
 * 1 GiB, else 1), BENCH_DIR where the files go.
 */
import { execFile as execFileCb, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createReadStream, createWriteStream, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { GiB, MiB, machine, mdTable, median, seededStream } from './util.js'

// The HTTP server runs in this process: curl must not block its event loop.
const execFile = promisify(execFileCb)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BIN = join(ROOT, 'bin', 'imgswarm')
const SIZES = (process.env.BENCH_SIZES ?? process.env.IMGSWARM_BENCH_MIB ?? '512,4096').split(',').map(Number)

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Bytes a process has caused to be written to storage, from /proc/PID/io. */
function writtenBytes (pid: number): number {
  return Number(/write_bytes: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0)
}

/** Peak resident size of a process so far, from /proc/PID/status. */
function peakRss (pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
}

/** Samples a process's anonymous and file-backed resident sizes (mapped LevelDB tables show as file) every 100 ms. */
function rssSampler (pid: number): { stop: () => { anon: number, file: number } } {
  let anon = 0
  let file = 0
  const sample = (): void => {
    try {
      const s = readFileSync(`/proc/${pid}/status`, 'utf8')
      anon = Math.max(anon, Number(/RssAnon:\s+(\d+)/.exec(s)?.[1] ?? 0) * 1024)
      file = Math.max(file, Number(/RssFile:\s+(\d+)/.exec(s)?.[1] ?? 0) * 1024)
    } catch {}
  }
  const timer = setInterval(sample, 100)
  return { stop: () => { clearInterval(timer); sample(); return { anon, file } } }
}

/** BENCH_CPU_PROF=DIR writes a V8 CPU profile of each daemon there (read it in Chrome's DevTools). */
function startDaemon (dir: string, extra: string[]): ChildProcess {
  const prof = process.env.BENCH_CPU_PROF
  if (prof != null && prof !== '') return spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', prof, BIN, 'daemon', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `unix:${join(dir, 'api.sock')}`, '--log-level', 'warn', ...extra], { stdio: ['ignore', 'ignore', 'inherit'] })
  return spawn(BIN, ['daemon', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `unix:${join(dir, 'api.sock')}`, '--log-level', 'warn', ...extra], { stdio: ['ignore', 'ignore', 'inherit'] })
}

async function waitFor<T> (what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const v = await fn().catch(() => undefined)
    if (v !== undefined) return v
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}

interface SizeResult { size: number, baseline: number, p2p: number, ttfbMs: number, cpuA: number, cpuB: number, writes: number, rssB: number, anonB: number, fileB: number }

async function measure (work: string, size: number): Promise<SizeResult> {
  const runs = Number(process.env.BENCH_RUNS ?? (size < GiB ? 3 : 1))
  const image = join(work, 'image')
  const next = seededStream(`bench-transfer-${size}`)
  const out = createWriteStream(image)
  for (let off = 0; off < size; off += 4 * MiB) if (!out.write(next(Math.min(4 * MiB, size - off)))) await once(out, 'drain')
  out.end()
  await once(out, 'close')
  const ref = `sha256:${execFileSync('sha256sum', [image]).toString().split(' ')[0]}`

  // Baseline: curl from a plain HTTP server to disk, then sha256sum.
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': size })
    createReadStream(image).pipe(res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const baseline: number[] = []
  try {
    for (let i = 0; i < runs; i++) {
      await rm(join(work, 'curl.out'), { force: true })
      const t0 = performance.now()
      await execFile('curl', ['-sS', '-o', join(work, 'curl.out'), `http://127.0.0.1:${port}/image`])
      const sum = (await execFile('sha256sum', [join(work, 'curl.out')])).stdout.split(' ')[0]
      baseline.push((performance.now() - t0) / 1000)
      if (`sha256:${sum}` !== ref) throw new Error('baseline download is corrupt')
    }
  } finally {
    server.close()
    await rm(join(work, 'curl.out'), { force: true })
  }

  // imgswarm: A holds the image; B fetches it from A through its API, streamed to a file.
  const dirA = join(work, 'a')
  const dirB = join(work, 'b')
  execFileSync(BIN, ['import', image, '--data', dirA, '--quiet'])
  const children: ChildProcess[] = []
  try {
    const a = startDaemon(dirA, [])
    children.push(a)
    const infoA = await waitFor('daemon A', async () => JSON.parse(await readFile(join(dirA, 'daemon.json'), 'utf8')) as { multiaddrs: string[] })
    const b = startDaemon(dirB, ['--bootstrap', infoA.multiaddrs[0]])
    children.push(b)
    const client = new ApiClient(parseApiAddress(`unix:${join(dirB, 'api.sock')}`))
    await waitFor('daemon B ready', async () => (await client.call<{ ready: boolean }>('GET', '/healthz')).ready ? true : undefined)
    const p2p: number[] = []
    const ttfb: number[] = []
    const cpuA: number[] = []
    const cpuB: number[] = []
    const writes: number[] = []
    const sampler = rssSampler(b.pid!)
    for (let i = 0; i < runs; i++) {
      await client.remove(ref, { force: true }).catch(() => {})
      await client.gc()
      const [ca, cb, wb] = [cpuSeconds(a.pid!), cpuSeconds(b.pid!), writtenBytes(b.pid!)]
      const t0 = performance.now()
      const res = await client.send('GET', `/v1/images/${ref}`)
      if (res.statusCode !== 200) throw new Error(`GET answered ${res.statusCode ?? 0}`)
      const file = createWriteStream(join(work, 'p2p.out'))
      let first = true
      for await (const piece of res) {
        if (first) { ttfb.push(performance.now() - t0); first = false }
        if (!file.write(piece)) await once(file, 'drain')
      }
      file.end()
      await once(file, 'close')
      p2p.push((performance.now() - t0) / 1000)
      cpuA.push(cpuSeconds(a.pid!) - ca)
      cpuB.push(cpuSeconds(b.pid!) - cb)
      writes.push(writtenBytes(b.pid!) - wb)
      const sum = execFileSync('sha256sum', [join(work, 'p2p.out')]).toString().split(' ')[0]
      if (`sha256:${sum}` !== ref) throw new Error('peer-to-peer copy is corrupt')
      await rm(join(work, 'p2p.out'), { force: true })
    }
    const parts = sampler.stop()
    return { size, baseline: median(baseline), p2p: median(p2p), ttfbMs: median(ttfb), cpuA: median(cpuA), cpuB: median(cpuB), writes: median(writes), rssB: peakRss(b.pid!), anonB: parts.anon, fileB: parts.file }
  } finally {
    for (const c of children) c.kill('SIGTERM')
    await Promise.all(children.map(async c => { if (c.exitCode == null) await once(c, 'exit') }))
    await rm(dirA, { recursive: true, force: true })
    await rm(dirB, { recursive: true, force: true })
    await rm(image, { force: true })
  }
}

async function main (): Promise<void> {
  const work = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'imgswarm-bench-transfer-'))
  try {
    console.log(`# transfer benchmark: ${SIZES.join(', ')} MiB; ${machine()}`)
    const rows: Array<Array<string | number>> = []
    for (const mib of SIZES) {
      const r = await measure(work, mib * MiB)
      const mbps = (s: number): string => (r.size / 1e6 / s).toFixed(0)
      const perGiB = (cpu: number): string => (cpu / (r.size / GiB)).toFixed(1)
      rows.push([`${mib} MiB`, `${r.baseline.toFixed(2)} s (${mbps(r.baseline)} MB/s)`, `${r.p2p.toFixed(2)} s (${mbps(r.p2p)} MB/s)`, (r.baseline / r.p2p).toFixed(2), r.ttfbMs.toFixed(0), `${perGiB(r.cpuA)} / ${perGiB(r.cpuB)}`, (r.writes / r.size).toFixed(2), `${(r.rssB / 1e6).toFixed(0)} (${(r.anonB / 1e6).toFixed(0)} / ${(r.fileB / 1e6).toFixed(0)})`])
    }
    console.log(mdTable(['image', 'curl to disk + sha256sum (baseline)', 'imgswarm A → B, streamed to disk', 'ratio to baseline', 'first byte ms', 'CPU s/GiB sender / receiver', 'receiver disk writes / byte', 'receiver peak RSS MB (anon / file)'], rows))
    console.log('\nEach imgswarm copy was checked with sha256sum; B verified every chunk and the whole-image digest on the way.')
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

await main()
