/**
 * `npm run bench:chunking`: what the content-defined chunker costs and what it buys, for average chunk
 * sizes of 16 to 256 KiB (min = avg/4, max = avg*4).
 *
 * 1. The fast chunker is checked cut for cut against the plain one-byte loop (bench/reference-chunker.ts).
 * 2. Throughput over 256 MiB of random bytes in memory, 1 MiB pieces (median of several runs, by wall
 *    clock and by CPU time: the second is steadier on a shared machine).
 * 3. Bytes two versions share: (a) 256 MiB of random bytes vs the same with 10 insertions and
 *    overwrites; (b) a tar of a real directory tree vs the same tree with one package-sized directory
 *    added in the middle and five files modified; (c) the two trees as ext4 images (mke2fs -d), when
 *    mke2fs is installed.
 *
 * Environment: BENCH_TREE (default /usr/lib/x86_64-linux-gnu), BENCH_EXTRA (the directory added,
 * default /usr/lib/python3.11/lib-dynload), BENCH_REPS (default 5), BENCH_SKIP_TREE=1 to skip (b) and (c).
 */
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Chunker, DEFAULT_CHUNKER, type ChunkerParams } from '../src/chunks/fastcdc.js'
import { ReferenceChunker } from './reference-chunker.js'
import { MiB, machine, mdTable, median, prng, seededStream, timed } from './util.js'

const KiB = 1024
const AVGS = [16, 32, 64, 128, 256].map(k => k * KiB)
const REPS = Number(process.env.BENCH_REPS ?? 5)
const TREE = process.env.BENCH_TREE ?? '/usr/lib/x86_64-linux-gnu'
const EXTRA = process.env.BENCH_EXTRA ?? '/usr/lib/python3.11/lib-dynload'

const paramsFor = (avg: number): ChunkerParams => ({ min: avg / 4, avg, max: avg * 4 })
const label = (p: ChunkerParams): string => `${p.min / KiB}/${p.avg / KiB}/${p.max / KiB} KiB`

interface Splitter { push: (data: Uint8Array) => Uint8Array[], finish: () => Uint8Array[] }

/** Fixed-size chunks: the baseline that content-defined chunking is meant to beat. */
class FixedChunker implements Splitter {
  private parts: Uint8Array[] = []
  private have = 0
  constructor (private readonly size: number) {}
  push (data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    let o = 0
    while (o < data.length) {
      const take = Math.min(this.size - this.have, data.length - o)
      this.parts.push(data.subarray(o, o + take))
      this.have += take
      o += take
      if (this.have === this.size) out.push(this.emit())
    }
    return out
  }

  finish (): Uint8Array[] { return this.have > 0 ? [this.emit()] : [] }
  private emit (): Uint8Array {
    const c = Buffer.concat(this.parts, this.have)
    this.parts = []
    this.have = 0
    return c
  }
}

function feed (splitter: Splitter, data: Uint8Array, piece: (i: number) => number): number[] {
  const lengths: number[] = []
  for (let o = 0, k = 0; o < data.length; k++) {
    const n = Math.min(piece(k), data.length - o)
    for (const c of splitter.push(data.subarray(o, o + n))) lengths.push(c.length)
    o += n
  }
  for (const c of splitter.finish()) lengths.push(c.length)
  return lengths
}

// ---- 1. the fast chunker makes exactly the reference's cuts ----

function crossCheck (): string {
  const next = seededStream('crosscheck')
  const data = next(48 * MiB)
  data.fill(0, 4 * MiB, 7 * MiB) // a run of zeros: max-size cuts
  for (let i = 9 * MiB; i < 10 * MiB; i++) data[i] = i % 7 // a short-period pattern
  const rnd = prng(7)
  let checked = 0
  for (const avg of [...AVGS, 4 * KiB]) {
    const p = paramsFor(avg)
    const ref = feed(new ReferenceChunker(p), data, () => MiB).join(',')
    for (const [name, piece] of [['1 MiB', () => MiB], ['random 1 B-96 KiB', () => 1 + Math.floor(rnd() * 96 * KiB)], ['whole', () => data.length], ['4093 B', () => 4093]] as Array<[string, () => number]>) {
      const got = feed(new Chunker(p), data, piece).join(',')
      if (got !== ref) throw new Error(`fast chunker disagrees with the reference for ${label(p)}, ${name} pieces`)
      checked++
    }
  }
  return `cross-check: the fast chunker made the reference's cuts in all ${checked} cases (6 sizes × 4 ways of splitting 48 MiB)`
}

// ---- 2. throughput ----

function throughput (): string {
  const data = seededStream('throughput')(256 * MiB)
  const rows: Array<Array<string | number>> = []
  const rate = (secs: number[]): string => (256 / median(secs)).toFixed(0)
  for (const avg of AVGS) {
    const p = paramsFor(avg)
    const wall: number[] = []
    const cpu: number[] = []
    let chunks = 0
    for (let r = 0; r < REPS; r++) {
      const t = timed(() => feed(new Chunker(p), data, () => MiB).length)
      chunks = t.value
      wall.push(t.wall)
      cpu.push(t.cpu)
    }
    rows.push([label(p), 'fast', rate(wall), rate(cpu), chunks, Math.round(data.length / chunks)])
  }
  for (const p of [DEFAULT_CHUNKER]) {
    const wall: number[] = []
    const cpu: number[] = []
    let chunks = 0
    for (let r = 0; r < Math.min(REPS, 3); r++) {
      const t = timed(() => feed(new ReferenceChunker(p), data, () => MiB).length)
      chunks = t.value
      wall.push(t.wall)
      cpu.push(t.cpu)
    }
    rows.push([label(p), 'reference (one byte a loop)', rate(wall), rate(cpu), chunks, Math.round(data.length / chunks)])
  }
  const wall: number[] = []
  const cpu: number[] = []
  for (let r = 0; r < REPS; r++) {
    const t = timed(() => { const h = createHash('sha256'); for (let o = 0; o < data.length; o += MiB) h.update(data.subarray(o, o + MiB)); return h.digest() })
    wall.push(t.wall)
    cpu.push(t.cpu)
  }
  rows.push(['-', 'sha256 (node:crypto), for scale', rate(wall), rate(cpu), '-', '-'])
  return mdTable(['min/avg/max', 'chunker', 'MiB/s (wall)', 'MiB/s (CPU time)', 'chunks', 'mean chunk (B)'], rows)
}

// ---- 3. sharing between versions ----

interface Version { keys: Set<string>, chunks: number, bytes: number, zeroBytes: number, shared: number, sharedNonZero: number }

const ZEROS = new Uint8Array(4 * MiB)
const isZero = (b: Uint8Array): boolean => Buffer.compare(b, ZEROS.subarray(0, b.length)) === 0

/** Chunks one stream with every splitter at once; counts what `previous` (per splitter) already holds. */
async function survey (source: AsyncIterable<Uint8Array>, makers: Array<() => Splitter>, previous?: Version[]): Promise<Version[]> {
  const splitters = makers.map(m => m())
  const out: Version[] = makers.map(() => ({ keys: new Set(), chunks: 0, bytes: 0, zeroBytes: 0, shared: 0, sharedNonZero: 0 }))
  const take = (i: number, c: Uint8Array): void => {
    const v = out[i]
    const key = createHash('sha256').update(c).digest('binary')
    const zero = isZero(c)
    v.keys.add(key)
    v.chunks++
    v.bytes += c.length
    if (zero) v.zeroBytes += c.length
    if (previous?.[i].keys.has(key) === true) {
      v.shared += c.length
      if (!zero) v.sharedNonZero += c.length
    }
  }
  for await (const piece of source) {
    splitters.forEach((s, i) => { for (const c of s.push(piece)) take(i, c) })
  }
  splitters.forEach((s, i) => { for (const c of s.finish()) take(i, c) })
  return out
}

const MAKERS: Array<{ name: string, make: () => Splitter }> = [
  ...AVGS.map(avg => ({ name: `CDC ${label(paramsFor(avg))}`, make: () => new Chunker(paramsFor(avg)) })),
  { name: 'fixed 64 KiB (baseline)', make: () => new FixedChunker(64 * KiB) }
]

function sharingTable (v1: Version[], v2: Version[]): string {
  const pct = (a: number, b: number): string => b === 0 ? '-' : `${(100 * a / b).toFixed(1)}%`
  const mib = (n: number): string => (n / MiB).toFixed(1)
  return mdTable(
    ['chunker', 'chunks v1 / v2', 'mean chunk v2 (B)', 'manifest v2 (36 B/chunk)', 'v2 bytes shared with v1', 'shared, zero chunks left out', 'v2 MiB to move'],
    MAKERS.map((m, i) => [
      m.name, `${v1[i].chunks} / ${v2[i].chunks}`, Math.round(v2[i].bytes / v2[i].chunks), `${(v2[i].chunks * 36 / KiB).toFixed(1)} KiB`,
      pct(v2[i].shared, v2[i].bytes), pct(v2[i].sharedNonZero, v2[i].bytes - v2[i].zeroBytes), mib(v2[i].bytes - v2[i].shared)
    ]))
}

async function * pieces (data: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < data.length; o += MiB) yield data.subarray(o, o + MiB)
}

async function randomEdits (): Promise<string> {
  const next = seededStream('v1')
  const v1 = next(256 * MiB)
  const rnd = prng(42)
  // Ten edits at sorted random places: insertions and overwrites of 1 B to 4 KiB.
  const places = Array.from({ length: 10 }, () => Math.floor(rnd() * v1.length)).sort((a, b) => a - b)
  const parts: Buffer[] = []
  let at = 0
  const edits: string[] = []
  places.forEach((p, k) => {
    const len = 1 + Math.floor(rnd() * 4096)
    parts.push(v1.subarray(at, p))
    parts.push(next(len))
    if (k % 2 === 0) { at = p; edits.push(`+${len}`) } else { at = Math.min(v1.length, p + len); edits.push(`~${len}`) }
  })
  parts.push(v1.subarray(at))
  const v2 = Buffer.concat(parts)
  const a = await survey(pieces(v1), MAKERS.map(m => m.make))
  const b = await survey(pieces(v2), MAKERS.map(m => m.make), a)
  return `(a) 256 MiB of random bytes vs the same with 10 edits (+N inserted, ~N overwritten bytes: ${edits.join(' ')}); v2 is ${v2.length} bytes\n\n${sharingTable(a, b)}`
}

// ---- (b) and (c): a real tree, then the same tree with one more package ----

function run (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString().trim()}`)
}

async function * spawnOut (cmd: string, args: string[]): AsyncGenerator<Uint8Array> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const done = new Promise<number | null>(resolve => child.on('close', resolve))
  yield * child.stdout
  const code = await done
  if (code !== 0) throw new Error(`${cmd} exited with ${code}`)
}

async function * fileStream (path: string): AsyncGenerator<Uint8Array> {
  yield * createReadStream(path, { highWaterMark: MiB })
}

async function listFiles (dir: string, rel = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of (await readdir(join(dir, rel), { withFileTypes: true })).sort((a, b) => a.name < b.name ? -1 : 1)) {
    const r = join(rel, e.name)
    if (e.isDirectory()) out.push(...await listFiles(dir, r))
    else if (e.isFile()) out.push(r)
  }
  return out
}

async function treeEdits (): Promise<string> {
  if (!existsSync(TREE) || !existsSync(EXTRA)) return `(b) skipped: ${TREE} or ${EXTRA} does not exist`
  const work = await mkdtemp(join(tmpdir(), 'imgswarm-bench-chunking-'))
  try {
    // v2: a hard-link copy of the tree (no data copied), one more directory whose name sorts in the
    // middle, and five files spread through the tree rewritten with changes.
    const v2 = join(work, 'v2')
    run('cp', ['-al', TREE, v2])
    const top = (await readdir(v2)).sort()
    const extraName = `${top[Math.floor(top.length / 2)]}-extra-package`
    run('cp', ['-a', EXTRA, join(v2, extraName)])
    const files = (await listFiles(v2)).filter(f => !f.startsWith(extraName))
    const big: string[] = []
    for (const f of files) if ((await stat(join(v2, f))).size >= 16 * KiB) big.push(f)
    const changed: string[] = []
    for (let k = 0; k < 5; k++) {
      const f = big[Math.floor((k + 0.5) * big.length / 5)]
      const bytes = await readFile(join(v2, f))
      const mid = bytes.length >> 1
      // Four files keep their size with 64 changed bytes; the fifth also grows by 3000 inserted bytes.
      const patched = k < 4
        ? Buffer.concat([bytes.subarray(0, mid), Buffer.alloc(64, 0x5a), bytes.subarray(mid + 64)])
        : Buffer.concat([bytes.subarray(0, mid), Buffer.alloc(3000, 0x5a), bytes.subarray(mid)])
      await unlink(join(v2, f)) // breaks the hard link: the original tree is untouched
      await writeFile(join(v2, f), patched)
      changed.push(`${f} (${bytes.length} B)`)
    }
    const extraBytes = (await listFiles(join(v2, extraName))).length
    const tarArgs = (dir: string): string[] => ['--sort=name', '--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '-cf', '-', '-C', dir, '.']
    const makers = MAKERS.map(m => m.make)
    const t1 = await survey(spawnOut('tar', tarArgs(TREE)), makers)
    const t2 = await survey(spawnOut('tar', tarArgs(v2)), makers, t1)
    const du = spawnSync('du', ['-sb', EXTRA]).stdout.toString().split('\t')[0]
    let text = `(b) tar of ${TREE} (${files.length} files, ${(t1[0].bytes / MiB).toFixed(0)} MiB) vs the same tree with ${EXTRA} (${extraBytes} files, ${(Number(du) / MiB).toFixed(1)} MiB) added as ${extraName}/ and 5 files modified:\n` +
      changed.map(c => `    ${c}`).join('\n') + `\n\n${sharingTable(t1, t2)}`

    if (spawnSync('mke2fs', ['-V']).status === 0) {
      // (c) The trees as ext4 file systems, as an image builder would make them; same size, UUID, hash
      // seed and clock (E2FSPROGS_FAKE_TIME), so the differences are those of the content.
      const size = Math.ceil((t2[0].bytes * 1.3 + 64 * MiB) / MiB)
      const img1 = join(work, 'v1.img')
      const img2 = join(work, 'v2.img')
      const mk = (dir: string, img: string): void => run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', dir, '-U', '6a1f3c6e-2b7d-4f53-9a45-0c1d2e3f4a5b', '-E', 'hash_seed=0b7c1d2e-3f40-4152-a364-758697a8b9ca,root_owner=0:0', img, `${size}M`], { E2FSPROGS_FAKE_TIME: '1700000000' })
      mk(TREE, img1)
      mk(v2, img2)
      const e1 = await survey(fileStream(img1), makers)
      const e2 = await survey(fileStream(img2), makers, e1)
      text += `\n\n(c) the same two trees as ${size} MiB ext4 images (mke2fs -d; ${((e2[0].bytes - e2[0].zeroBytes) / MiB).toFixed(0)} MiB of v2 is in chunks that are not all zeros)\n\n${sharingTable(e1, e2)}`
    }
    return text
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

async function main (): Promise<void> {
  console.log(`# imgswarm chunking benchmark\n${machine()}\n`)
  console.log(crossCheck() + '\n')
  console.log(`Throughput over 256 MiB of random bytes in 1 MiB pieces (median of ${REPS}):\n\n${throughput()}\n`)
  console.log(await randomEdits() + '\n')
  if (process.env.BENCH_SKIP_TREE !== '1') console.log(await treeEdits() + '\n')
}

await main()
