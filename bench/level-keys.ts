/**
 * `npm run bench:level-keys`: how much of LevelDB's cost in an import comes from the key layout of
 * chunk bytes? Writes BENCH_SIZE MiB (default 1024) of 64 KiB values in 1 MiB batches, BENCH_IN_FLIGHT
 * (default 4) batches at once, with the default tuning of src/store/tuning.ts (or BENCH_TUNING, JSON),
 * in each layout of BENCH_LAYOUTS (default all three):
 *
 *   random             keyed by a 32-byte digest (store format 1): every table file spans the whole
 *                      key space, so each compaction merges with everything below it;
 *   sequential         keyed by an 8-byte insertion counter (+ the digest), with a digest -> counter
 *                      index entry per chunk in a second LevelDB (store format 2: the chunk log and
 *                      the catalog): new tables do not overlap old ones, so LevelDB moves them down
 *                      the levels without rewriting them;
 *   sequential-one-db  the same keys, with the index in the same LevelDB under a prefix that sorts
 *                      after them: every level-0 table then spans from its first new chunk to the
 *                      index, and is merged once more on its way down;
 *
 * then reads every value back in write order (as an export does). Each variant runs in its own
 * process; disk writes come from /proc/self/io, peak RSS from the kernel.
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import { DEFAULT_TUNING, type LevelTuning } from '../src/store/tuning.js'
import { MiB, machine, mdTable } from './util.js'

const SIZE = Number(process.env.BENCH_SIZE ?? 1024) * MiB
const VALUE = 64 * 1024
const BATCH = 16 // values: 1 MiB, as an import writes them
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 4) // batches: LevelDB groups concurrent writers
const TUNING: LevelTuning = { ...DEFAULT_TUNING, ...JSON.parse(process.env.BENCH_TUNING ?? '{}') as Partial<LevelTuning> }

function writeBytes (): number {
  return Number(/write_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN)
}

async function child (mode: string, dir: string): Promise<void> {
  const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view', ...TUNING })
  await db.open()
  const index = mode !== 'sequential' ? undefined : new Level<Uint8Array, Uint8Array>(join(dir, 'index'), { keyEncoding: 'view', valueEncoding: 'view', ...TUNING })
  await index?.open()
  const pool = Array.from({ length: 16 }, () => randomBytes(VALUE))
  const n = SIZE / VALUE
  const keys: Uint8Array[] = []
  const inflight: Array<Promise<void>> = []
  const w0 = writeBytes()
  const t0 = performance.now()
  for (let i = 0; i < n; i += BATCH) {
    const ops: Array<{ type: 'put', key: Uint8Array, value: Uint8Array }> = []
    const indexOps: Array<{ type: 'put', key: Uint8Array, value: Uint8Array }> = []
    for (let j = i; j < Math.min(n, i + BATCH); j++) {
      const digest = createHash('sha256').update(`chunk ${j}`).digest()
      if (mode === 'random') {
        keys.push(digest)
        ops.push({ type: 'put', key: Buffer.concat([Buffer.from('c'), digest]), value: pool[j % 16] })
      } else {
        const seq = Buffer.alloc(9)
        seq.write('s', 0)
        seq.writeBigUInt64BE(BigInt(j), 1)
        keys.push(seq)
        ops.push({ type: 'put', key: Buffer.concat([seq, digest]), value: pool[j % 16] })
        const entry = { type: 'put' as const, key: digest, value: seq.subarray(1) }
        if (index != null) indexOps.push(entry)
        else ops.push({ ...entry, key: Buffer.concat([Buffer.from('x'), digest]) })
      }
    }
    // Values first: a crash in between leaves a value no index names (garbage for gc), never the reverse.
    const write = (async () => {
      await db.batch(ops)
      if (index != null) await index.batch(indexOps)
    })()
    inflight.push(write)
    if (inflight.length >= IN_FLIGHT) await inflight.shift()
  }
  await Promise.all(inflight)
  const writeSecs = (performance.now() - t0) / 1000
  const written = writeBytes() - w0
  const t1 = performance.now()
  if (mode === 'random') {
    for (let i = 0; i < n; i += 32) await db.getMany(keys.slice(i, i + 32).map(k => Buffer.concat([Buffer.from('c'), k])), { fillCache: false })
  } else {
    // In write order the values are one key range: read it with an iterator, as an export could.
    let got = 0
    for await (const _ of db.values({ gte: Buffer.from('s'), lt: Buffer.from('t'), fillCache: false })) got++
    if (got !== n) throw new Error(`read ${got} of ${n}`)
  }
  const readSecs = (performance.now() - t1) / 1000
  await db.close()
  await index?.close()
  console.log(JSON.stringify({ writeSecs, written, readSecs, maxRssMB: process.resourceUsage().maxRSS * 1024 / 1e6 }))
}

async function main (): Promise<void> {
  const [, , role, mode, dir] = process.argv
  if (role === 'child') { await child(mode, dir); return }
  console.log(`# LevelDB key layout experiment\n${machine()}\n`)
  const rows: Array<Array<string | number>> = []
  for (const m of (process.env.BENCH_LAYOUTS ?? 'random,sequential,sequential-one-db').split(',')) {
    const d = await mkdtemp(join(tmpdir(), 'imgswarm-bench-keys-'))
    try {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), 'child', m, d], { encoding: 'utf8' })
      if (r.status !== 0) throw new Error(r.stderr)
      const o = JSON.parse(r.stdout) as { writeSecs: number, written: number, readSecs: number, maxRssMB: number }
      rows.push([m, (SIZE / 1e6 / o.writeSecs).toFixed(0), (o.written / SIZE).toFixed(2), (SIZE / 1e6 / o.readSecs).toFixed(0), o.maxRssMB.toFixed(0)])
    } finally {
      await rm(d, { recursive: true, force: true })
    }
  }
  console.log(`${SIZE / MiB} MiB of 64 KiB values, settings ${JSON.stringify(TUNING)}:\n`)
  console.log(mdTable(['keys', 'write MB/s', 'disk writes / size', 'read back MB/s', 'peak RSS MB'], rows))
}

await main()
