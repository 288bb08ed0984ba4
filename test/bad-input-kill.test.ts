// Issue 2, item 5: SIGKILL in the middle of an import. The next run shows no half image as
// available, verify finds nothing wrong, and a re-import completes and exports byte-identical.
import { createReadStream } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, writeRandomFile } from './helpers/data.js'
import { assertIntact, importOk, listStates, startCli } from './helpers/failure.js'

const MiB = 1024 * 1024

t.test('SIGKILL during an import from stdin', async t => {
  const dir = await tempDir(t)
  const scratch = join(dir, 'scratch')
  const env = { IMGSWARM_DATA: join(dir, 'data') }
  await writeFile(join(dir, 'small'), seededBytes(2 * MiB + 3, 'kill-small'))
  const ref = await importOk(t, env, join(dir, 'small'))
  const bigPath = join(dir, 'big')
  const bigRef = await writeRandomFile(bigPath, 160 * MiB)

  for (const killAfter of [48 * MiB, 100 * MiB]) {
    const importer = startCli(t, ['import', '-', '--name', 'killed'], env)
    const stdin = importer.child.stdin!
    let written = 0
    const started = Date.now()
    for await (const piece of createReadStream(bigPath, { highWaterMark: MiB })) {
      if (importer.child.exitCode !== null || Date.now() - started > 60_000) break
      // Waits for the importer to take each piece, so `written` is what it has (nearly) consumed.
      if (!stdin.write(piece)) await new Promise(resolve => stdin.once('drain', resolve))
      written += (piece as Buffer).length
      if (written >= killAfter) break
    }
    t.ok(written >= killAfter, `${written / MiB} MiB went in before the kill`)
    importer.child.kill('SIGKILL')
    const killed = await importer.done
    t.equal(killed.signal, 'SIGKILL', 'the importer died by SIGKILL, not by finishing')

    const states = await listStates(env)
    t.same([...states], [[ref, 'available']], 'the next run lists no half image, and the first image is available')
    const verify = await runCli(['verify'], { env })
    t.equal(verify.code, 0, `verify exits 0: ${verify.stderr}`)
    t.match(verify.stdout, /all good/)
    t.equal(verify.stderr, '')
    await assertIntact(t, env, ref, scratch)
  }

  const again = await importOk(t, env, bigPath)
  t.equal(again, bigRef, 're-import of the whole file completes with the right ref')
  await assertIntact(t, env, bigRef, scratch)
  await assertIntact(t, env, ref, scratch)
  const gc = await runCli(['gc', '--json'], { env })
  t.equal(gc.code, 0, gc.stderr)
  t.equal((JSON.parse(gc.stdout) as { keptImages: number }).keptImages, 2)
  await assertIntact(t, env, bigRef, scratch)
})
