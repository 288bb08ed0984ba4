/**
 * `npm run bench:import`: `imgswarm import` and `imgswarm export` of a 512 MiB and a 4 GiB file of
 * random bytes, each a separate process under `/usr/bin/time -v`, against `sha256sum` of the same file
 * measured just before, in the same run. Prints each figure beside its baseline: throughput (MB/s,
 * 10^6 bytes) and the ratio to sha256sum, CPU seconds per GiB, peak RSS, and disk writes per image byte
 * (write amplification, from the kernel's count of bytes the process sent to storage). Then the disk
 * use of a store of 8 images before and after removing half of them and running `gc`.
 * BENCH_PLOT=FILE also writes the throughput by size as a table for bench/import-export.gp.
 *
 * `npm run bench:tuning` (BENCH_SWEEP=1) then sweeps LevelDB settings on the larger file, through the
 * library in a child process (bench/run-op.ts) so each setting runs exactly the code the CLI runs.
 *
 * Environment: BENCH_SIZES (MiB, default "512,4096"), BENCH_REPS (runs of each CLI operation, default 3;
 * the median is shown), BENCH_LIBRARY=1 (also the import through the library), BENCH_GC=0 (skip the gc
 * measurement), BENCH_SWEEP=1, BENCH_SWEEP_SIZE (MiB, default 1024), BENCH_SWEEP_ONLY (comma-
 * separated setting names to run), BENCH_DIR (where the temporary files go, default the OS temp dir).
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_TUNING, type LevelTuning } from '../src/store/tuning.js'
import { MiB, machine, mdTable, median, seededStream } from './util.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BIN = join(ROOT, 'bin', 'imgswarm')
const RUN_OP = join(ROOT, 'dist', 'bench', 'run-op.js')
const SIZES = (process.env.BENCH_SIZES ?? '512,4096').split(',').filter(s => s !== '').map(Number)
const REPS = Number(process.env.BENCH_REPS ?? 3)
const SWEEP_SIZE = Number(process.env.BENCH_SWEEP_SIZE ?? 1024)

interface Timed { wall: number, cpu: number, rssMB: number, writtenBytes: number, stdout: string }

/** Runs a command under `/usr/bin/time -v`; fails on a non-zero exit. */
async function timeV (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Timed> {
  return await new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-v', cmd, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', d => { out += d })
    child.stderr.setEncoding('utf8').on('data', d => { err += d })
    child.on('error', reject)
    child.on('close', code => {
      if (code !== 0) { reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${err.trim().split('\n').slice(0, 3).join(' / ')}`)); return }
      const field = (name: string): string => {
        const m = new RegExp(`${name.replace(/[()]/g, '\\$&')}: (.*)`).exec(err)
        if (m == null) throw new Error(`no "${name}" in the output of /usr/bin/time -v (is GNU time installed?)`)
        return m[1].trim()
      }
      const clock = field('Elapsed (wall clock) time (h:mm:ss or m:ss)').split(':').map(Number)
      const wall = clock.reduce((acc, x) => acc * 60 + x, 0)
      resolve({
        wall,
        cpu: Number(field('User time (seconds)')) + Number(field('System time (seconds)')),
        rssMB: Number(field('Maximum resident set size (kbytes)')) * 1024 / 1e6,
        writtenBytes: Number(field('File system outputs')) * 512,
        stdout: out
      })
    })
  })
}

async function makeFile (path: string, mib: number, seed = `bench-import-${mib}`): Promise<string> {
  const next = seededStream(seed)
  const fh = await open(path, 'w')
  const hash = createHash('sha256')
  try {
    for (let i = 0; i < mib; i++) {
      const piece = next(MiB)
      hash.update(piece)
      await fh.write(piece)
    }
  } finally {
    await fh.close()
  }
  return `sha256:${hash.digest('hex')}`
}

async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const piece of createReadStream(path, { highWaterMark: MiB })) hash.update(piece)
  return `sha256:${hash.digest('hex')}`
}

/** One operation's runs, each with the sha256sum time measured just before it (the machine is shared). */
interface Row { label: string, size: number, runs: Array<Timed & { baseline: number }> }

function rows (results: Row[]): Array<Array<string | number>> {
  return results.map(r => {
    const wall = median(r.runs.map(x => x.wall))
    const base = median(r.runs.map(x => x.baseline))
    const gib = r.size / (1024 * MiB)
    return [
      r.label, `${r.size / MiB} MiB`, `${wall.toFixed(2)} s`, (r.size / 1e6 / wall).toFixed(0),
      (r.size / 1e6 / base).toFixed(0),
      `${median(r.runs.map(x => x.baseline / x.wall)).toFixed(2)}×`,
      Number.isNaN(r.runs[0].cpu) ? '-' : (median(r.runs.map(x => x.cpu)) / gib).toFixed(1),
      Number.isNaN(r.runs[0].rssMB) ? '-' : Math.max(...r.runs.map(x => x.rssMB)).toFixed(0),
      (median(r.runs.map(x => x.writtenBytes)) / r.size).toFixed(2)
    ]
  })
}
const HEADER = ['operation', 'size', 'time (median)', 'MB/s', 'sha256sum MB/s (same rounds)', '× sha256sum (median of per-run ratios)', 'CPU s per GiB', 'peak RSS MB (max)', 'disk writes / image bytes']

async function sha256sumSeconds (file: string): Promise<number> {
  return (await timeV('sha256sum', [file])).wall
}

/**
 * REPS rounds of: sha256sum, import into a fresh data dir, export right after (LevelDB is still
 * compacting what the import wrote, and reads trigger more), export again; then the import again
 * through the library in a fresh data dir.
 */
async function cliRuns (work: string, file: string, ref: string, size: number): Promise<Row[]> {
  const library = process.env.BENCH_LIBRARY === '1'
  const rows: Row[] = ['imgswarm import', 'imgswarm export (right after import)', 'imgswarm export (again)', ...library ? ['library import (bench/run-op.js, no AbortSignal)'] : []]
    .map(label => ({ label, size, runs: [] }))
  for (let r = 0; r < REPS; r++) {
    const data = join(work, `data-${size}-${r}`)
    const out = join(work, `out-${size}`)
    // sha256sum is timed just before each operation: the machine is shared, and its load changes.
    const imp = await timeV(BIN, ['import', '-q', '--data', data, file])
    const baseline = await sha256sumSeconds(file)
    if (imp.stdout.trim() !== ref) throw new Error(`import printed ${imp.stdout.trim()}, expected ${ref}`)
    rows[0].runs.push({ ...imp, baseline })
    for (const row of [rows[1], rows[2]]) {
      const b = await sha256sumSeconds(file)
      const exp = await timeV(BIN, ['export', '-q', '--data', data, ref, '-o', out])
      if (await sha256File(out) !== ref) throw new Error(`export of ${ref} wrote different bytes`)
      await rm(out)
      row.runs.push({ ...exp, baseline: b })
    }
    await rm(data, { recursive: true })
    if (library) {
      // The same import through the library without an AbortSignal, which the CLI always passes.
      const b = await sha256sumSeconds(file)
      const lib = await timeV(process.execPath, [RUN_OP, 'import', data, file])
      if ((JSON.parse(lib.stdout) as { ref: string }).ref !== ref) throw new Error('library import gave the wrong ref')
      rows[3].runs.push({ ...lib, baseline: b })
      await rm(data, { recursive: true })
    }
    process.stderr.write(`${size / MiB} MiB round ${r + 1}: sha256sum ${baseline.toFixed(2)} s, import ${imp.wall.toFixed(2)} s, export ${rows[1].runs[r].wall.toFixed(2)} s\n`)
  }
  return rows
}

/**
 * Disk use of a store of IMAGES images of GC_MIB MiB each (random bytes, nothing shared), after
 * removing every other one and running `gc`: how much of the removed images' space comes back.
 */
const GC_IMAGES = 8
const GC_MIB = 128
async function gcRun (work: string): Promise<string> {
  const data = join(work, 'data-gc')
  const refs: string[] = []
  for (let i = 0; i < GC_IMAGES; i++) {
    const file = join(work, `gc-${i}.img`)
    refs.push(await makeFile(file, GC_MIB, `bench-gc-${i}`))
    await timeV(BIN, ['import', '-q', '--data', data, file])
    await rm(file)
  }
  const before = await duBytes(data)
  // `rm` runs gc itself (src/local-node.ts), so each removal gives its chunks' space back.
  let wall = 0
  let cpu = 0
  let written = 0
  for (let i = 0; i < GC_IMAGES; i += 2) {
    const r = await timeV(BIN, ['rm', '-q', '--data', data, refs[i]])
    wall += r.wall
    cpu += r.cpu
    written += r.writtenBytes
  }
  const after = await duBytes(data)
  await rm(data, { recursive: true })
  const removed = GC_IMAGES / 2 * GC_MIB * MiB
  return mdTable(['store', 'disk use (du) MiB', 'rm + gc time, all', 'CPU s', 'disk writes MiB'], [
    [`${GC_IMAGES} images of ${GC_MIB} MiB (random, nothing shared)`, (before / MiB).toFixed(0), '', '', ''],
    [`after rm of every other one (${GC_IMAGES / 2})`, (after / MiB).toFixed(0), `${wall.toFixed(2)} s`, cpu.toFixed(1), (written / MiB).toFixed(0)]
  ]) + `\n\nrm + gc gave back ${((before - after) / MiB).toFixed(0)} MiB of the ${(removed / MiB).toFixed(0)} MiB removed (${(100 * (before - after) / removed).toFixed(0)}%).`
}

/** Bytes the files under `dir` take on the disk (`du -sb` counts apparent sizes; this counts blocks). */
async function duBytes (dir: string): Promise<number> {
  const r = await new Promise<string>((resolve, reject) => {
    const child = spawn('du', ['-s', '--block-size=1', dir], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', d => { out += d })
    child.on('error', reject)
    child.on('close', () => resolve(out))
  })
  return Number(r.split('\t')[0])
}

// ---- the LevelDB tuning sweep ----

const M = MiB
/**
 * Settings tried, each a change from the defaults in src/store/tuning.ts: a grid of write buffer and
 * table file sizes (the two that matter: memtables and mapped table files are most of the memory),
 * then one-at-a-time changes of the other settings. maxOpenFiles below 74 is raised to 74 by LevelDB.
 */
const SWEEP: Array<[string, Partial<LevelTuning>]> = [
  ['defaults', {}],
  ...[2, 4, 8, 16, 32, 64].flatMap(wb => [1, 2, 4].map((mf): [string, Partial<LevelTuning>] => [`wb${wb}-mf${mf}`, { writeBufferSize: wb * M, maxFileSize: mf * M }])),
  ['wb32-mf32', { writeBufferSize: 32 * M, maxFileSize: 32 * M }],
  ['wb64-mf64', { writeBufferSize: 64 * M, maxFileSize: 64 * M }],
  ['maxOpenFiles200', { maxOpenFiles: 200 }],
  ['blockSize4k', { blockSize: 4 * 1024 }],
  ['blockSize256k', { blockSize: 256 * 1024 }],
  ['cache0', { cacheSize: 0 }],
  ['cache64m', { cacheSize: 64 * M }],
  ['compression', { compression: true }]
]

async function sweep (work: string, file: string, ref: string, size: number): Promise<string> {
  const only = process.env.BENCH_SWEEP_ONLY?.split(',')
  const results: Array<Array<string | number>> = []
  for (const [name, tuning] of SWEEP) {
    if (only != null && !only.includes(name)) continue
    const data = join(work, `sweep-${name}`)
    const out = join(work, 'sweep-out')
    const env = { BENCH_TUNING: JSON.stringify(tuning) }
    const baseline = await sha256sumSeconds(file)
    const imp = await timeV(process.execPath, [RUN_OP, 'import', data, file], env)
    if ((JSON.parse(imp.stdout) as { ref: string }).ref !== ref) throw new Error(`${name}: import gave the wrong ref`)
    const exp = await timeV(process.execPath, [RUN_OP, 'export', data, ref, out], env)
    if (await sha256File(out) !== ref) throw new Error(`${name}: export wrote different bytes`)
    await rm(out)
    await rm(data, { recursive: true })
    const t = { ...DEFAULT_TUNING, ...tuning }
    const row = [
      name, t.writeBufferSize / M, t.maxFileSize / M, t.maxOpenFiles, t.blockSize / 1024, t.cacheSize / M, t.compression ? 'snappy' : 'no',
      baseline.toFixed(2), (size / 1e6 / imp.wall).toFixed(0), (baseline / imp.wall).toFixed(2), imp.cpu.toFixed(1), imp.rssMB.toFixed(0), (imp.writtenBytes / size).toFixed(1),
      (size / 1e6 / exp.wall).toFixed(0), (baseline / exp.wall).toFixed(2), exp.cpu.toFixed(1), exp.rssMB.toFixed(0)
    ]
    results.push(row)
    process.stderr.write(`${row.join('  ')}\n`)
  }
  return mdTable(['setting', 'write buffer MiB', 'max file MiB', 'max open files', 'block KiB', 'cache MiB', 'compression',
    'sha256sum s', 'import MB/s', 'import × sha256sum', 'import CPU s', 'import peak RSS MB', 'import disk writes / size', 'export MB/s', 'export × sha256sum', 'export CPU s', 'export peak RSS MB'], results)
}

async function main (): Promise<void> {
  await stat(RUN_OP) // built by `npm run bench:*`, which runs tsc first
  console.log(`# imgswarm import/export benchmark\n${machine()}\n`)
  const work = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'imgswarm-bench-import-'))
  try {
    const files = new Map<number, { file: string, ref: string }>()
    for (const mib of new Set([...SIZES, ...(process.env.BENCH_SWEEP === '1' ? [SWEEP_SIZE] : [])])) {
      const file = join(work, `random-${mib}MiB.img`)
      files.set(mib, { file, ref: await makeFile(file, mib) })
    }
    if (REPS > 0) {
      const all: Row[] = []
      for (const mib of SIZES) {
        const { file, ref } = files.get(mib)!
        all.push(...await cliRuns(work, file, ref, mib * MiB))
        if (mib !== SWEEP_SIZE || process.env.BENCH_SWEEP !== '1') await rm(file)
      }
      console.log(`CLI with the default settings (${REPS} rounds; a fresh data dir for every import; sha256sum of the same file timed just before each operation):\n\n${mdTable(HEADER, rows(all))}\n`)
      if (process.env.BENCH_PLOT != null) {
        const lines = ['# MiB\timport MB/s\texport MB/s\tsha256sum MB/s']
        for (const mib of SIZES) {
          const of = (label: string): Row => all.find(r => r.size === mib * MiB && r.label === label)!
          const mbs = (r: Row): string => (r.size / 1e6 / median(r.runs.map(x => x.wall))).toFixed(0)
          const imp = of('imgswarm import')
          lines.push([mib, mbs(imp), mbs(of('imgswarm export (again)')), (imp.size / 1e6 / median(imp.runs.map(x => x.baseline))).toFixed(0)].join('\t'))
        }
        await writeFile(process.env.BENCH_PLOT, lines.join('\n') + '\n')
      }
    }
    if (process.env.BENCH_GC !== '0') console.log(`gc after removing half of the images:\n\n${await gcRun(work)}\n`)
    if (process.env.BENCH_SWEEP === '1') {
      const { file, ref } = files.get(SWEEP_SIZE)!
      console.log(`LevelDB settings, import then export of ${SWEEP_SIZE} MiB through the library (one run each, sha256sum timed just before each):\n\n${await sweep(work, file, ref, SWEEP_SIZE * MiB)}\n`)
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

await main()
