/**
 * `npm run bench:transfer`: one image from one peer to another over 127.0.0.1, next to what a
 * compute node does today: curl the file from a plain HTTP server to disk, then sha256sum it.
 * Both run in this script, on the same file, several times; the table gives medians and the ratio.
 * IMGSWARM_BENCH_MIB sets the size (default 1024), IMGSWARM_BENCH_RUNS the repetitions (default 3).
 */
import { execFile as execFileCb, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { once } from 'node:events'
import { createWriteStream, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { createReadStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { MiB, machine, mdTable, median, seededStream } from './util.js'

// The HTTP server runs in this process: curl must not block its event loop.
const execFile = promisify(execFileCb)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BIN = join(ROOT, 'bin', 'imgswarm')
const SIZE = Number(process.env.IMGSWARM_BENCH_MIB ?? 1024) * MiB
const RUNS = Number(process.env.IMGSWARM_BENCH_RUNS ?? 3)

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

function startDaemon (dir: string, extra: string[]): ChildProcess {
  const child = spawn(BIN, ['daemon', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `unix:${join(dir, 'api.sock')}`, '--log-level', 'warn', ...extra], { stdio: ['ignore', 'ignore', 'inherit'] })
  return child
}

async function waitFor<T> (what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const v = await fn().catch(() => undefined)
    if (v !== undefined) return v
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function main (): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'imgswarm-bench-transfer-'))
  const children: ChildProcess[] = []
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': SIZE })
    createReadStream(join(work, 'image')).pipe(res)
  })
  try {
    console.log(`# transfer benchmark: ${SIZE / MiB} MiB, ${RUNS} runs; ${machine()}`)
    const next = seededStream('bench-transfer')
    const out = createWriteStream(join(work, 'image'))
    for (let off = 0; off < SIZE; off += 4 * MiB) if (!out.write(next(Math.min(4 * MiB, SIZE - off)))) await once(out, 'drain')
    out.end()
    await once(out, 'close')
    const ref = `sha256:${execFileSync('sha256sum', [join(work, 'image')]).toString().split(' ')[0]}`

    // Baseline: curl from a plain HTTP server to disk, then sha256sum.
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as { port: number }).port
    const baseline: number[] = []
    for (let i = 0; i < RUNS; i++) {
      await rm(join(work, 'curl.out'), { force: true })
      const t0 = performance.now()
      await execFile('curl', ['-sS', '-o', join(work, 'curl.out'), `http://127.0.0.1:${port}/image`])
      const sum = (await execFile('sha256sum', [join(work, 'curl.out')])).stdout.split(' ')[0]
      baseline.push((performance.now() - t0) / 1000)
      if (`sha256:${sum}` !== ref) throw new Error('baseline download is corrupt')
    }

    // imgswarm: A holds the image; B fetches it from A through its API, writing a verified file.
    const dirA = join(work, 'a')
    const dirB = join(work, 'b')
    execFileSync(BIN, ['import', join(work, 'image'), '--data', dirA, '--quiet'])
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
    for (let i = 0; i < RUNS; i++) {
      await client.remove(ref).catch(() => {})
      await client.gc()
      const [ca, cb] = [cpuSeconds(a.pid!), cpuSeconds(b.pid!)]
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
      const sum = execFileSync('sha256sum', [join(work, 'p2p.out')]).toString().split(' ')[0]
      if (`sha256:${sum}` !== ref) throw new Error('peer-to-peer copy is corrupt')
    }
    const mbps = (s: number): string => (SIZE / 1e6 / s).toFixed(0)
    console.log(mdTable(['path', 'median s', 'MB/s', 'ratio to baseline', 'first byte ms', 'CPU s sender / receiver'], [
      ['curl from HTTP to disk, then sha256sum (baseline)', median(baseline).toFixed(2), mbps(median(baseline)), '1.00', '-', '-'],
      ['imgswarm: peer A to peer B, streamed to disk through B\'s API', median(p2p).toFixed(2), mbps(median(p2p)), (median(baseline) / median(p2p)).toFixed(2), median(ttfb).toFixed(0), `${median(cpuA).toFixed(1)} / ${median(cpuB).toFixed(1)}`]
    ]))
    console.log('\nThe imgswarm file was checked with sha256sum after each run; B verified every chunk and the whole-image digest on the way.')
  } finally {
    server.close()
    for (const c of children) c.kill('SIGTERM')
    await Promise.all(children.map(async c => { if (c.exitCode == null) await once(c, 'exit') }))
    await rm(work, { recursive: true, force: true })
  }
}

await main()
