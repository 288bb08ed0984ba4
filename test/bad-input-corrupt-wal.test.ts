// Issue 2, item 5: a corrupted store — bytes flipped in LevelDB's write-ahead log while the store is
// stopped. `verify` exits 1 and names what was lost (chunks of an image, or a whole image that LevelDB
// dropped on opening the store); `export` exits non-zero and leaves no file; the other image stays
// intact; a re-import repairs the damaged one.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { runCli } from './helpers/cli.js'
import { DEFAULT_TUNING } from '../src/store/tuning.js'
import { assertExportRefused, assertRepaired, assertVerifyNames, flipImageBytes, flipRecordBytes, setup } from './helpers/corrupt.js'
import { assertCleanFailure, assertIntact, importOk, listStates } from './helpers/failure.js'

/**
 * An image that stays in the write-ahead log (smaller than the write buffer) and is written in more
 * than one batch: its first chunk in a batch of chunks, its last with its record.
 */
const IN_LOG = Math.floor(0.75 * DEFAULT_TUNING.writeBufferSize)

t.test('bytes flipped in the write-ahead log', async t => {
  const s = await setup(t, IN_LOG)
  // LevelDB drops the damaged log record, a batch of chunks: the image's record stays, its chunks do not.
  t.ok((await flipImageBytes(s, '.log', 'first')).length > 0, 'bytes flipped in the write-ahead log')
  await assertVerifyNames(t, s)
  await assertExportRefused(t, s)
  await assertRepaired(t, s)
})

t.test('bytes flipped in the write-ahead log record that holds an image\'s record', async t => {
  // An image's record is written in one batch with its manifest: LevelDB drops both.
  const s = await setup(t, IN_LOG)
  t.ok((await flipRecordBytes(s)).length > 0, 'bytes flipped in the write-ahead log')
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
  const s = await setup(t, IN_LOG)
  await flipRecordBytes(s)
  const v = await runCli(['verify'], { env: s.env })
  t.equal(v.code, 1, 'verify exits 1')
  t.match(v.stderr, /^store damaged: LevelDB dropped .* of damaged write-ahead log \(\d+\.log\) when the store was opened at .*; images written just before may be missing\n$/)
  t.match(v.stdout, /the store lost data/)
  await assertIntact(t, s.env, s.keep, s.scratch)
})
