// Issue 2, item 5: the disk filling up during an import (on a small tmpfs) gets one clear line and
// loses nothing stored before; `gc` gives the space back and imports work again.
import { open, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { DEFAULT_TUNING } from '../src/store/tuning.js'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, writeRandomFile } from './helpers/data.js'
import { assertCleanFailure, assertIntact, freeBytes, importOk, listStates, mountTmpfs, tmpfsSkipReason, type T } from './helpers/failure.js'

const MiB = 1024 * 1024
const skip = await tmpfsSkipReason()
if (skip !== undefined) t.comment(`SKIP disk-full tests: ${skip}`)

/**
 * Imports a small image onto a tmpfs of `size` bytes, then fails to import a file twice that size
 * (from a file and from stdin); checks that nothing was lost, that gc gives all the space back and that
 * a small import works again.
 */
async function fillDuringImport (t: T, size: number): Promise<{ dir: string, data: string, env: NodeJS.ProcessEnv, scratch: string, refs: string[] }> {
  const dir = await tempDir(t)
  const scratch = join(dir, 'scratch')
  const data = await mountTmpfs(t, `${size / MiB}m`)
  const env = { IMGSWARM_DATA: data }
  await writeFile(join(dir, 'small'), seededBytes(2 * MiB + 11, 'disk-full-small'))
  const ref = await importOk(t, env, join(dir, 'small'), ['--name', 'small'])
  const freeAfterFirst = await freeBytes(data)
  const bigRef = await writeRandomFile(join(dir, 'big'), 2 * size)

  const full = await runCli(['import', join(dir, 'big')], { env })
  assertCleanFailure(t, full, [/no space left/, data])
  const states = await listStates(env)
  t.same([...states], [[ref, 'available']], 'no half image is listed; the first image is still available')
  t.notOk(states.has(bigRef), 'the image that did not fit is not listed')
  await assertIntact(t, env, ref, scratch)

  const stdinFull = await runCli(['import', '-'], { env, input: seededBytes(2 * size, 'disk-full-stdin') })
  assertCleanFailure(t, stdinFull, [/no space left/, data])
  await assertIntact(t, env, ref, scratch)

  const before = await freeBytes(data)
  const gc = await runCli(['gc'], { env })
  t.equal(gc.code, 0, `gc works on the full disk: ${gc.stderr}`)
  t.match(gc.stdout, /^freed .* in \d+ chunks; kept 1 images\n$/, 'gc says what it freed')
  const after = await freeBytes(data)
  t.ok(after > before, `gc gave disk space back (${(before / MiB).toFixed(1)} → ${(after / MiB).toFixed(1)} MiB free)`)
  t.ok(after >= freeAfterFirst - MiB, `all that the failed imports took (${(freeAfterFirst / MiB).toFixed(1)} MiB were free before them)`)

  await writeFile(join(dir, 'small2'), seededBytes(1 * MiB + 7, 'disk-full-small2'))
  const ref2 = await importOk(t, env, join(dir, 'small2'))
  await assertIntact(t, env, ref2, scratch)
  await assertIntact(t, env, ref, scratch)
  const verify = await runCli(['verify'], { env })
  t.equal(verify.code, 0, `verify finds nothing wrong: ${verify.stderr}`)
  return { dir, data, env, scratch, refs: [ref, ref2] }
}

t.test('the disk under the data dir fills up during an import', { skip: skip ?? false }, async t => {
  // Room for small images, not for a big one.
  const size = Math.max(48 * MiB, DEFAULT_TUNING.writeBufferSize + 16 * MiB)
  const { dir, data, env, scratch, refs: [ref, ref2] } = await fillDuringImport(t, size)

  // Another program fills the disk to the last byte while imgswarm is not running.
  const filler = join(data, 'filler')
  await fillDisk(filler, size)
  t.ok(await freeBytes(data) < 64 * 1024, 'the disk is full')
  const r = await runCli(['import', join(dir, 'small')], { env })
  assertCleanFailure(t, r, [/no space left/, data])
  for (const args of [['ls'], ['export', ref, '-o', join(scratch, 'on-full-disk')]]) {
    const res = await runCli(args, { env })
    if (res.code !== 0) assertCleanFailure(t, res, [/no space left/, data])
  }
  await rm(filler)
  await assertIntact(t, env, ref, scratch)
  await assertIntact(t, env, ref2, scratch)
  const after2 = await runCli(['import', join(dir, 'small')], { env })
  t.equal(after2.code, 0, `with space freed, imports work: ${after2.stderr}`)
  t.equal((await runCli(['verify'], { env })).code, 0, 'and verify finds nothing wrong')
})

t.test('the disk fills up while LevelDB has tables to flush and compact', { skip: skip ?? false }, async t => {
  // Large enough for write buffers to turn into tables and for level 0 to reach its compaction
  // trigger (four tables): a compaction that runs out of space must not leave a store that cannot open.
  await fillDuringImport(t, 4 * DEFAULT_TUNING.writeBufferSize + 72 * MiB)
})

/** Writes zeros to `path` until the disk is full (at most `limit` bytes). */
async function fillDisk (path: string, limit: number): Promise<void> {
  const fh = await open(path, 'w')
  try {
    for (const piece of [MiB, 4096, 1]) {
      const buf = Buffer.alloc(piece)
      for (let written = 0; written < limit; written += piece) {
        try {
          await fh.write(buf)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
          throw err
        }
      }
    }
  } finally {
    await fh.close().catch(() => {})
  }
}

t.test('the disk under an export target fills up', { skip: skip ?? false }, async t => {
  const dir = await tempDir(t)
  const env = { IMGSWARM_DATA: join(dir, 'data') }
  await writeFile(join(dir, 'img'), seededBytes(3 * MiB + 1, 'export-full'))
  const ref = await importOk(t, env, join(dir, 'img'))
  const target = await mountTmpfs(t, '1m')
  const out = join(target, 'out.img')
  assertCleanFailure(t, await runCli(['export', ref, '-o', out], { env }), [out, /no space left/])
  t.same(await readdir(target), [], 'neither the file nor a temporary file is left in the target dir')
  await assertIntact(t, env, ref, join(dir, 'scratch'))
})
