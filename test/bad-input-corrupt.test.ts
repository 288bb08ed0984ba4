// Issue 2, item 5: a corrupted store (bytes flipped in a table file, and in the write-ahead log, while
// the store is stopped). `verify` exits 1 and names the image and its bad chunks; `export` exits
// non-zero and leaves no file rather than writing wrong bytes; other images stay intact; a re-import
// repairs the damaged one.
import { mkdir, open, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { assertCleanFailure, assertIntact, dbFiles, importOk, listStates, type T } from './helpers/failure.js'

const MiB = 1024 * 1024
const CHUNK_CID = /\bbafk[a-z2-7]{50,}\b/

/** Inverts `count` bytes in the middle of a file. */
async function flipMiddle (path: string, count = 16): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    const { size } = await fh.stat()
    const at = Math.floor(size / 2)
    const buf = Buffer.alloc(count)
    await fh.read(buf, 0, count, at)
    for (let i = 0; i < count; i++) buf[i] ^= 0xff
    await fh.write(buf, 0, count, at)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Opens and closes the store once: LevelDB turns its write-ahead log into a table file on open. */
async function reopen (t: T, env: NodeJS.ProcessEnv): Promise<void> {
  const r = await runCli(['ls'], { env })
  t.equal(r.code, 0, r.stderr)
}

type Setup = { dir: string, env: NodeJS.ProcessEnv, data: string, keep: string, damaged: string, damagedPath: string, scratch: string }

/** Image `keep` goes into a table file of its own; image `damaged` follows it. */
async function setup (t: T, damagedSize: number): Promise<Setup> {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const env = { IMGSWARM_DATA: data }
  await writeFile(join(dir, 'keep'), seededBytes(3 * MiB + 1, 'corrupt-keep'))
  const damagedPath = join(dir, 'damaged')
  await writeFile(damagedPath, seededBytes(damagedSize, 'corrupt-damaged'))
  const keep = await importOk(t, env, join(dir, 'keep'), ['--name', 'keep'])
  await reopen(t, env)
  const damaged = await importOk(t, env, damagedPath, ['--name', 'damaged'])
  return { dir, env, data, keep, damaged, damagedPath, scratch: join(dir, 'scratch') }
}

/** Export of the damaged image: non-zero, one line, and nothing left in the target directory. */
async function assertExportRefused (t: T, s: Setup): Promise<void> {
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
  t.not(piped.stdout.length, 3 * MiB, 'and does not pass the image off as complete')
}

async function assertVerifyNames (t: T, s: Setup): Promise<void> {
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

async function assertRepaired (t: T, s: Setup): Promise<void> {
  t.equal((await listStates(s.env)).get(s.damaged), 'failed', 'the damaged image is listed failed, not available')
  await assertIntact(t, s.env, s.keep, s.scratch)
  const again = await importOk(t, s.env, s.damagedPath)
  t.equal(again, s.damaged, 're-import gives the same ref')
  await assertIntact(t, s.env, s.damaged, s.scratch)
  const v = await runCli(['verify'], { env: s.env })
  t.equal(v.code, 0, `after the re-import verify finds nothing wrong: ${v.stderr}`)
  await assertIntact(t, s.env, s.keep, s.scratch)
}

t.test('bytes flipped in a table file', async t => {
  const s = await setup(t, 6 * MiB + 5)
  await reopen(t, s.env) // the damaged image's chunks now sit in the newest table file
  const tables = (await dbFiles(s.data, '.ldb')).sort((a, b) => b.path.localeCompare(a.path))
  t.equal(tables.length, 2, 'one table file per image')
  await flipMiddle(tables[0].path)
  await assertExportRefused(t, s)
  await assertVerifyNames(t, s)
  await assertRepaired(t, s)
})

t.test('bytes flipped in the write-ahead log', async t => {
  const s = await setup(t, 12 * MiB + 5)
  const logs = await dbFiles(s.data, '.log')
  t.ok(logs.length > 0 && logs[0].size > 8 * MiB, 'the damaged image is still in the write-ahead log')
  await flipMiddle(logs[0].path)
  await assertVerifyNames(t, s)
  await assertExportRefused(t, s)
  await assertRepaired(t, s)
})

t.test('a failed export or verify does not hide damage from the next verify', async t => {
  const s = await setup(t, 6 * MiB + 5)
  await reopen(t, s.env)
  const tables = (await dbFiles(s.data, '.ldb')).sort((a, b) => b.path.localeCompare(a.path))
  await flipMiddle(tables[0].path)
  await assertVerifyNames(t, s) // marks it failed and drops the bad chunk
  await assertVerifyNames(t, s) // and says so again
  assertCleanFailure(t, await runCli(['export', s.damaged, '-o', join(s.dir, 'x')], { env: s.env }), [s.damaged, /failed/])
})

t.test('bytes flipped in the write-ahead log record that holds a whole image', async t => {
  // Under 4 MiB an image is written in one batch: its chunks, manifest and record in one log record.
  const s = await setup(t, 1 * MiB + 5)
  const logs = await dbFiles(s.data, '.log')
  t.ok(logs.length > 0 && logs[0].size > MiB, 'the image is still in the write-ahead log')
  await flipMiddle(logs[0].path)
  const v = await runCli(['verify', '--json'], { env: s.env })
  t.equal(v.code, 1, 'verify exits 1 although no listed image is damaged')
  const report = JSON.parse(v.stdout) as { failed: string[], recoveryDamage?: string }
  t.match(report.recoveryDamage, /LevelDB dropped .* of damaged write-ahead log/, 'the JSON report says what LevelDB dropped')
  t.same(await listStates(s.env), new Map([[s.keep, 'available']]), 'the image whose record was dropped is gone; the other is available')
  await assertIntact(t, s.env, s.keep, s.scratch)
  assertCleanFailure(t, await runCli(['export', s.damaged, '-o', join(s.dir, 'x')], { env: s.env }), [/no image/, s.damaged])
  t.same((await readdir(s.dir)).filter(n => n === 'x'), [], 'no output file')
  const again = await runCli(['verify'], { env: s.env })
  t.equal(again.code, 0, 'a verify of all images reports the loss once')
  t.equal(await importOk(t, s.env, s.damagedPath), s.damaged, 'a re-import brings the image back')
  await assertIntact(t, s.env, s.damaged, s.scratch)
})

t.test('verify without --json names what LevelDB dropped', async t => {
  const s = await setup(t, 1 * MiB + 5)
  await flipMiddle((await dbFiles(s.data, '.log'))[0].path)
  const v = await runCli(['verify'], { env: s.env })
  t.equal(v.code, 1, 'verify exits 1')
  t.match(v.stderr, /^store damaged: LevelDB dropped .* of damaged write-ahead log \(\d+\.log\) when the store was opened at .*; images written just before may be missing\n$/)
  t.match(v.stdout, /the store lost data/)
  await assertIntact(t, s.env, s.keep, s.scratch)
})
