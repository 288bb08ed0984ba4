// Issue 2, item 5: a corrupted store — bytes flipped in a table file while the store is stopped.
// `verify` exits 1 and names the image and its bad chunks; `export` exits non-zero and leaves no file
// rather than writing wrong bytes; the other image stays intact; a re-import repairs the damaged one.
// bad-input-corrupt-wal does the same for the write-ahead log.
import { join } from 'node:path'
import t from 'tap'
import { runCli } from './helpers/cli.js'
import { assertExportRefused, assertRepaired, assertVerifyNames, flipImageBytes, reopen, setup, MiB } from './helpers/corrupt.js'
import { assertCleanFailure } from './helpers/failure.js'

t.test('bytes flipped in a table file', async t => {
  const s = await setup(t, 6 * MiB + 5)
  await reopen(t, s.env) // every chunk of the damaged image now sits in a table file
  t.ok((await flipImageBytes(s, '.ldb', 'middle')).length > 0, 'bytes flipped in a table file')
  await assertExportRefused(t, s)
  await assertVerifyNames(t, s)
  await assertRepaired(t, s)
})

t.test('a failed export or verify does not hide damage from the next verify', async t => {
  const s = await setup(t, 6 * MiB + 5)
  await reopen(t, s.env)
  await flipImageBytes(s, '.ldb', 'middle')
  await assertVerifyNames(t, s) // marks it failed and drops the bad chunk
  await assertVerifyNames(t, s) // and says so again
  assertCleanFailure(t, await runCli(['export', s.damaged, '-o', join(s.dir, 'x')], { env: s.env }), [s.damaged, /failed/])
})
