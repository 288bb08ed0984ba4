/**
 * `node dist/bench/hash-offload.js` (after `npx tsc`): is it worth hashing chunks off the main thread? Hashes BENCH_SIZE MiB
 * (default 512) of random bytes as 64 KiB chunks, (a) with node:crypto's createHash on the main thread,
 * (b) with WebCrypto's `crypto.subtle.digest`, which runs on libuv's thread pool, 8 in flight. Prints
 * wall time, the main thread's busy time (event-loop utilisation) and CPU time of each, 3 rounds.
 */
import { createHash, randomBytes, webcrypto } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { MiB, machine, mdTable } from './util.js'

const SIZE = Number(process.env.BENCH_SIZE ?? 512) * MiB
const CHUNK = 64 * 1024
const IN_FLIGHT = 8

async function measure (fn: () => Promise<void>): Promise<[string, string, string]> {
  const e0 = performance.eventLoopUtilization()
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await fn()
  const wall = performance.now() - t0
  const busy = performance.eventLoopUtilization(e0).active
  const c = process.cpuUsage(c0)
  return [wall.toFixed(0), busy.toFixed(0), ((c.user + c.system) / 1000).toFixed(0)]
}

async function main (): Promise<void> {
  console.log(`# Chunk hashing on or off the main thread\n${machine()}\n`)
  const buf = randomBytes(SIZE)
  const rows: string[][] = []
  for (let round = 1; round <= 3; round++) {
    rows.push([String(round), 'createHash, main thread', ...await measure(async () => {
      for (let o = 0; o < buf.length; o += CHUNK) {
        createHash('sha256').update(buf.subarray(o, o + CHUNK)).digest()
        if ((o / CHUNK) % 64 === 0) await new Promise(resolve => setImmediate(resolve)) // as a pipeline yields
      }
    })])
    rows.push([String(round), `subtle.digest, thread pool, ${IN_FLIGHT} in flight`, ...await measure(async () => {
      const queue: Array<Promise<ArrayBuffer>> = []
      for (let o = 0; o < buf.length; o += CHUNK) {
        queue.push(webcrypto.subtle.digest('SHA-256', buf.subarray(o, o + CHUNK)))
        if (queue.length >= IN_FLIGHT) await queue.shift()
      }
      await Promise.all(queue)
    })])
  }
  console.log(`${SIZE / MiB} MiB in ${CHUNK / 1024} KiB chunks:\n\n${mdTable(['round', 'how', 'wall ms', 'main thread busy ms', 'CPU ms'], rows)}`)
}

await main()
