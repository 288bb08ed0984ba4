/*
 * Lazy boot against fetch-then-boot (`npm run bench:boot`, as root; run it inside
 * `flock /tmp/imgswarm-bench.lock`): a Debian kernel and a busybox initramfs boot under TCG with their
 * ext4 disk (BENCH_DISK_MIB, default 256 MiB, nearly all random files) served over NBD by a node that
 * fetches it from another node over a netns link of 20 and 100 Mbit/s. Prints the time to the disk
 * marker and the bytes received at that moment for each: fetch-then-boot, lazy boot, and lazy boot
 * with the boot profile that the first lazy boot recorded on another node.
 */
import { execFile as execFileCb } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { bootFromNbd, bootSkipReason, makeBootSet, MARKER } from '../test/helpers/boot-set.js'
import { MiB, mdTable } from './util.js'

const execFile = promisify(execFileCb)
const BIN = fileURLToPath(new URL('../../bin/imgswarm', import.meta.url))
const DISK_MIB = Number(process.env.BENCH_DISK_MIB ?? 256)
const RATES = (process.env.BENCH_RATES ?? '20mbit,100mbit').split(',')

async function cli (args: string[]): Promise<string> {
  return (await execFile(process.execPath, [BIN, ...args], { maxBuffer: 16 * MiB, timeout: 300_000 })).stdout
}

async function receivedFromPeers (c: ApiClient): Promise<number> {
  const res = await c.send('GET', '/metrics')
  let text = ''
  for await (const piece of res) text += String(piece)
  const line = text.split('\n').find(l => l.startsWith('imgswarm_fetched_bytes_total{source="peer"} '))
  return line == null ? NaN : Number(line.split(' ')[1])
}

/** The image's boot profile on a node, once its recording window has ended (bounded wait). */
async function waitForProfile (c: ApiClient, ref: string): Promise<{ chunks: number, bytes: number }> {
  const until = Date.now() + 120_000
  for (;;) {
    const p = await c.call<{ chunks: number, bytes: number }>('GET', `/v1/images/${ref}/profile`).catch(() => undefined)
    if (p != null) return p
    if (Date.now() > until) throw new Error('no boot profile was recorded on node1')
    await new Promise(resolve => setTimeout(resolve, 500))
  }
}

async function main (): Promise<void> {
  const skip = bootSkipReason() ?? (process.getuid?.() !== 0 ? 'not root (network namespaces)' : undefined)
  if (skip != null) { console.log(`bench:boot skipped: ${skip}`); return }
  const work = await mkdtemp(join(tmpdir(), 'isw-bench-boot-'))
  const rows: Array<Array<string | number>> = []
  try {
    const set = await makeBootSet(join(work, 'set'), DISK_MIB, Math.floor(DISK_MIB * 0.8))
    for (const rate of RATES) {
      const dir = join(work, `c-${rate}`)
      await cli(['cluster', 'up', '--dir', dir, '--nodes', '4', '--netns', '--rate', rate, '--json'])
      try {
        const info = JSON.parse(await cli(['cluster', 'status', '--dir', dir, '--json']))
        const clients = info.nodes.map((n: { api: string }) => new ApiClient(parseApiAddress(n.api)))
        const { record } = await clients[0].importFile(set.disk, { meta: { type: 'machine', name: 'boot-disk', format: 'raw' } })
        let lazyBytes = NaN
        const lazy = await bootFromNbd(set, join(dir, 'node1', 'nbd.sock'), record.manifest, join(work, `lazy-${rate}.log`), 300_000, { onMarker: async () => { lazyBytes = await receivedFromPeers(clients[1]) } })
        if (lazy.line?.includes(MARKER) !== true) throw new Error(`lazy boot did not reach the marker: ${lazy.console}`)
        // node1 keeps the reads of that boot as the image's profile once its window ends.
        const profile = await waitForProfile(clients[1], record.ref)
        // node1's fetch goes on after its marker: let it end, so node2's fetch has the link to itself.
        await clients[1].call('POST', '/v1/fetch?wait=true', { refs: [record.ref] })
        const t0 = Date.now()
        await clients[2].call('POST', '/v1/fetch?wait=true', { refs: [record.ref] })
        const fetchMs = Date.now() - t0
        const whole = await bootFromNbd(set, join(dir, 'node2', 'nbd.sock'), record.ref, join(work, `whole-${rate}.log`), 300_000)
        if (whole.line?.includes(MARKER) !== true) throw new Error(`boot after fetch did not reach the marker: ${whole.console}`)
        const wholeMs = fetchMs + whole.markerMs!
        // node3 boots lazily too; its fetch finds node1's profile (from a peer) and takes those chunks first.
        let profiledBytes = NaN
        const profiled = await bootFromNbd(set, join(dir, 'node3', 'nbd.sock'), record.manifest, join(work, `profiled-${rate}.log`), 300_000, { onMarker: async () => { profiledBytes = await receivedFromPeers(clients[3]) } })
        if (profiled.line?.includes(MARKER) !== true) throw new Error(`lazy boot with a profile did not reach the marker: ${profiled.console}`)
        const used = ((await clients[3].call('GET', '/v1/fetch')) as Array<{ image?: string, profile?: { chunks: number, from: string } }>).find(j => j.image === record.ref)?.profile
        console.error(`profile: ${profile.chunks} chunks (${(profile.bytes / MiB).toFixed(1)} MiB) recorded on node1; node3's fetch took ${used != null ? `${used.chunks} chunks from ${used.from}` : 'none'}`)
        rows.push([rate, 'fetch, then boot', (wholeMs / 1000).toFixed(1), `fetch ${(fetchMs / 1000).toFixed(1)} + boot ${(whole.markerMs! / 1000).toFixed(1)}`, (record.size / MiB).toFixed(1), '100%'])
        rows.push([rate, 'lazy boot (NBD)', (lazy.markerMs! / 1000).toFixed(1), `${(lazy.markerMs! / wholeMs).toFixed(2)}× fetch, then boot`, (lazyBytes / MiB).toFixed(1), `${(100 * lazyBytes / record.size).toFixed(0)}%`])
        rows.push([rate, 'lazy boot with a profile', (profiled.markerMs! / 1000).toFixed(1), `${(profiled.markerMs! / wholeMs).toFixed(2)}× fetch, then boot; profile ${profile.chunks} chunks, ${(profile.bytes / MiB).toFixed(1)} MiB`, (profiledBytes / MiB).toFixed(1), `${(100 * profiledBytes / record.size).toFixed(0)}%`])
        console.error(mdTable(['link', 'how', 'time to marker (s)', 'detail', 'received at marker (MiB)', 'of the image'], rows))
      } finally {
        await cli(['cluster', 'down', '--dir', dir]).catch(err => { console.error(`cluster down failed: ${(err as Error).message}`) })
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  console.log(`disk ${DISK_MIB} MiB ext4 (random files), Debian kernel + busybox initramfs under TCG, qemu -m 256 -smp 1`)
  console.log(mdTable(['link', 'how', 'time to marker (s)', 'detail', 'received at marker (MiB)', 'of the image'], rows))
}

await main()
