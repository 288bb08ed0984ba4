// Corrupted stores for the bad-input-corrupt tests: two images, one of them damaged by flipping bytes
// in the store's files while it is stopped, and what a user checks afterwards.
import { mkdir, open, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli, tempDir } from './cli.js'
import { seededBytes } from './data.js'
import { assertCleanFailure, assertIntact, dbFiles, importOk, listStates, type T } from './failure.js'

export const MiB = 1024 * 1024
const CHUNK_CID = /\bbafk[a-z2-7]{50,}\b/

/**
 * Flips 16 bytes of the damaged image as LevelDB stores them in its files ending in `ext` (`.ldb`
 * tables or the `.log` write-ahead log), at `where` in the image: in its first chunk, its middle, or
 * its last chunk (which lands in the same write as the image's record). Chunks are stored verbatim
 * (random bytes do not compress), so the bytes are found by content. Returns the files changed.
 */
export async function flipImageBytes (s: Setup, ext: string, where: 'first' | 'middle' | 'last'): Promise<string[]> {
  const files = await dbFiles(s.data, ext)
  const base = where === 'first' ? 1000 : where === 'middle' ? Math.floor(s.damagedBytes.length / 2) : s.damagedBytes.length - 1000
  // A sample may straddle a 32 KiB block header of the log: try a few.
  for (let attempt = 0; attempt < 16; attempt++) {
    const at = base + (where === 'last' ? -attempt : attempt) * 97
    const sample = s.damagedBytes.subarray(at, at + 64)
    const changed: string[] = []
    for (const f of files) {
      const bytes = await readFile(f.path)
      for (let i = bytes.indexOf(sample), n = 0; i >= 0 && n < 8; i = bytes.indexOf(sample, i + 1), n++) {
        const fh = await open(f.path, 'r+')
        try {
          const flipped = Buffer.from(sample.subarray(16, 32)).map(b => b ^ 0xff)
          await fh.write(flipped, 0, 16, i + 16)
          await fh.sync()
        } finally {
          await fh.close()
        }
        changed.push(f.path)
      }
    }
    if (changed.length > 0) return changed
  }
  throw new Error(`bytes of the ${where} of the damaged image are in no ${ext} file of ${s.data}`)
}

/**
 * Flips 16 bytes of the damaged image's record (its JSON, which names its ref) in the catalog's
 * write-ahead log: the record is written in one batch with the image's manifest, so LevelDB drops both
 * on the next open. Returns the files changed.
 */
export async function flipRecordBytes (s: Setup): Promise<string[]> {
  const sample = Buffer.from(`"ref":"${s.damaged}"`)
  const changed: string[] = []
  for (const f of (await dbFiles(s.data, '.log')).filter(f => f.path.startsWith(join(s.data, 'db')))) {
    const bytes = await readFile(f.path)
    const i = bytes.lastIndexOf(sample)
    if (i < 0) continue
    const fh = await open(f.path, 'r+')
    try {
      await fh.write(Buffer.from(sample.subarray(8, 24)).map(b => b ^ 0xff), 0, 16, i + 8)
      await fh.sync()
    } finally {
      await fh.close()
    }
    changed.push(f.path)
  }
  if (changed.length === 0) throw new Error(`the record of ${s.damaged} is in no write-ahead log of the catalog in ${s.data}`)
  return changed
}

/** Opens and closes the store once: LevelDB turns its write-ahead log into a table file on open. */
export async function reopen (t: T, env: NodeJS.ProcessEnv): Promise<void> {
  const r = await runCli(['ls'], { env })
  t.equal(r.code, 0, r.stderr)
}

export type Setup = { dir: string, env: NodeJS.ProcessEnv, data: string, keep: string, damaged: string, damagedPath: string, damagedBytes: Buffer, scratch: string }

/**
 * Image `keep`, then (after a reopen, which moves `keep` from the write-ahead log into table files)
 * image `damaged`, whose bytes the test is about to damage.
 */
export async function setup (t: T, damagedSize: number): Promise<Setup> {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const env = { IMGSWARM_DATA: data }
  await writeFile(join(dir, 'keep'), seededBytes(3 * MiB + 1, 'corrupt-keep'))
  const damagedPath = join(dir, 'damaged')
  const damagedBytes = seededBytes(damagedSize, 'corrupt-damaged')
  await writeFile(damagedPath, damagedBytes)
  const keep = await importOk(t, env, join(dir, 'keep'), ['--name', 'keep'])
  await reopen(t, env)
  const damaged = await importOk(t, env, damagedPath, ['--name', 'damaged'])
  return { dir, env, data, keep, damaged, damagedPath, damagedBytes, scratch: join(dir, 'scratch') }
}

/** Export of the damaged image: non-zero, one line, and nothing left in the target directory. */
export async function assertExportRefused (t: T, s: Setup): Promise<void> {
  const outDir = join(s.dir, 'out')
  await mkdir(outDir, { recursive: true })
  const r = await runCli(['export', s.damaged, '-o', join(outDir, 'damaged.img')], { env: s.env })
  assertCleanFailure(t, r, [s.damaged.slice(0, 19)])
  t.same(await readdir(outDir), [], 'no output file and no temporary file')
  // An existing file at the target stays as it was.
  const existing = join(outDir, 'existing.img')
  await writeFile(existing, 'the previous contents\n')
  assertCleanFailure(t, await runCli(['export', s.damaged, '-o', existing], { env: s.env }), [s.damaged.slice(0, 19)])
  t.same(await readdir(outDir), ['existing.img'], 'no temporary file beside it')
  t.equal(await readFile(existing, 'utf8'), 'the previous contents\n', 'the file that was there is unchanged')
  const piped = await runCli(['export', s.damaged, '-o', '-'], { env: s.env })
  t.not(piped.code, 0, 'export to stdout exits non-zero')
  t.not(piped.stdout.length, s.damagedBytes.length, 'and does not pass the image off as complete')
}

export async function assertVerifyNames (t: T, s: Setup): Promise<void> {
  const v = await runCli(['verify'], { env: s.env })
  t.equal(v.code, 1, 'verify exits 1')
  t.match(v.stderr, CHUNK_CID, 'verify names a bad chunk')
  t.match(v.stderr, s.damaged, 'and the image it belongs to')
  t.notMatch(v.stderr, s.keep, 'and not the intact image')
  t.match(v.stdout, s.damaged, 'the summary names the damaged image')
  const json = await runCli(['verify', '--json'], { env: s.env })
  t.equal(json.code, 1, 'verify --json exits 1 too')
  const report = JSON.parse(json.stdout) as { failed: string[], problems: Array<{ image: string, chunk: string }> }
  t.same(report.failed, [s.damaged], 'the JSON report lists the damaged image as failed')
  t.ok(report.problems.length > 0 && report.problems.every(p => p.image === s.damaged), 'with its bad chunks')
}

export async function assertRepaired (t: T, s: Setup): Promise<void> {
  t.equal((await listStates(s.env)).get(s.damaged), 'failed', 'the damaged image is listed failed, not available')
  await assertIntact(t, s.env, s.keep, s.scratch)
  const again = await importOk(t, s.env, s.damagedPath)
  t.equal(again, s.damaged, 're-import gives the same ref')
  await assertIntact(t, s.env, s.damaged, s.scratch)
  const v = await runCli(['verify'], { env: s.env })
  t.equal(v.code, 0, `after the re-import verify finds nothing wrong: ${v.stderr}`)
  await assertIntact(t, s.env, s.keep, s.scratch)
}

