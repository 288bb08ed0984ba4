// Issue 2, item 5: bad input gets one clear line on stderr and a non-zero exit, and nothing already
// stored is lost. This file covers bad input files, usage errors, unusable data dirs and a data dir in
// use; bad-input-refs, bad-input-disk-full, bad-input-kill and bad-input-corrupt cover the rest.
import { spawnSync } from 'node:child_process'
import { chmod, chown, mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import t from 'tap'
import { LocalNode } from '../src/index.js'
import { runCli } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { assertCleanFailure, assertIntact, hasOpen, listStates, runCliAs, startCli, storeWithImage, waitFor } from './helpers/failure.js'

const NOBODY = 65534

/** Why the unprivileged-user case cannot run here, or undefined when it can. */
function unprivilegedSkip (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to run a command as another user'
  const r = spawnSync('setpriv', ['--version'], { encoding: 'utf8', timeout: 10_000 })
  if (r.error != null || r.status !== 0) return 'needs setpriv (Debian package util-linux)'
  // A checkout under a private directory (mktemp -d is 0700) is out of the user's reach.
  const bin = fileURLToPath(new URL('../../bin/imgswarm', import.meta.url))
  if (spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', 'test', '-r', bin], { timeout: 10_000 }).status !== 0) return `the user nobody cannot read ${bin}`
  return undefined
}

t.test('bad files, a bad data dir, a busy data dir', async t => {
  const { dir, data, scratch, env, ref } = await storeWithImage(t, 'bad-input', 3 * 1024 * 1024 + 5, ['--name', 'keep-me'])

  t.test('import of a missing file', async t => {
    const missing = join(dir, 'no-such-file.img')
    assertCleanFailure(t, await runCli(['import', missing], { env }), [missing, /no such file/])
    await assertIntact(t, env, ref, scratch)
  })

  t.test('import of a directory', async t => {
    assertCleanFailure(t, await runCli(['import', dir], { env }), [dir, /is a directory/])
    await assertIntact(t, env, ref, scratch)
  })

  t.test('import with missing or extra arguments is a usage error (exit 2)', async t => {
    assertCleanFailure(t, await runCli(['import'], { env }), [/expected exactly one FILE/], { code: 2 })
    assertCleanFailure(t, await runCli(['import', 'a', 'b'], { env }), [/expected exactly one FILE/], { code: 2 })
    assertCleanFailure(t, await runCli(['import', join(dir, 'img'), '--type', 'floppy'], { env }), [/--type must be one of/], { code: 2 })
    assertCleanFailure(t, await runCli(['export', ref, '--bogus'], { env }), [/^imgswarm export: Unknown option '--bogus' \(see imgswarm export --help\)\n$/], { code: 2 })
    assertCleanFailure(t, await runCli(['frobnicate'], { env }), [/unknown command "frobnicate"/], { code: 2 })
    await assertIntact(t, env, ref, scratch)
  })

  t.test('import of an unreadable file, as an unprivileged user', { skip: unprivilegedSkip() ?? false }, async t => {
    // Root reads any file, so this runs as uid 65534 with a data dir of its own.
    const home = join(dir, 'nobody')
    const nobodyData = join(home, 'data')
    await chmod(dir, 0o755)
    await mkdir(nobodyData, { recursive: true })
    await chown(home, NOBODY, NOBODY)
    await chown(nobodyData, NOBODY, NOBODY)
    const readable = join(home, 'readable.img')
    const secret = join(home, 'secret.img')
    await writeFile(readable, seededBytes(512 * 1024 + 3, 'nobody'), { mode: 0o644 })
    await writeFile(secret, seededBytes(4096, 'secret'), { mode: 0o000 })
    const nenv = { IMGSWARM_DATA: nobodyData }
    const first = await runCliAs(NOBODY, ['import', readable], nenv)
    t.equal(first.code, 0, `an unprivileged user imports a readable file: ${first.stderr}`)
    const nref = first.stdout.trim()
    assertCleanFailure(t, await runCliAs(NOBODY, ['import', secret], nenv), [secret, /permission denied/])
    const ls = await runCliAs(NOBODY, ['ls', '--json'], nenv)
    t.equal(ls.code, 0, ls.stderr)
    const listed = JSON.parse(ls.stdout) as Array<{ ref: string, state: string }>
    t.same(listed.map(i => [i.ref, i.state]), [[nref, 'available']], 'only the first image, still available')
    const out = join(home, 'out.img')
    const exp = await runCliAs(NOBODY, ['export', nref, '-o', out], nenv)
    t.equal(exp.code, 0, exp.stderr)
    const rootOnly = join(dir, 'root-only')
    await mkdir(rootOnly, { mode: 0o755 })
    const denied = join(rootOnly, 'out.img')
    assertCleanFailure(t, await runCliAs(NOBODY, ['export', nref, '-o', denied], nenv), [denied, /permission denied/])
    t.same(await readdir(rootOnly), [], 'nothing was written where the user may not write')
    // The store of another user: the input is checked first, then the store says what is wrong.
    assertCleanFailure(t, await runCliAs(NOBODY, ['import', secret], env), [secret, /permission denied/])
    assertCleanFailure(t, await runCliAs(NOBODY, ['import', readable], env), [data, /permission denied/, /another --data/])
    await assertIntact(t, env, ref, scratch)
  })

  t.test('a data dir that cannot be used', async t => {
    const file = join(dir, 'img')
    assertCleanFailure(t, await runCli(['ls', '--data', file], { env }), [file, /is not a directory/])
    assertCleanFailure(t, await runCli(['import', file, '--data', join(file, 'sub')], { env }), [join(file, 'sub'), /is not a directory/])
    // Node's own recursive mkdir never returns here: the time limit turns a hang into a failure.
    const proc = '/proc/imgswarm-test/data'
    assertCleanFailure(t, await runCli(['ls', '--data', proc], { env, timeoutMs: 30_000 }), [proc, /cannot create data dir/])
    const foreign = join(dir, 'foreign')
    const db = new Level(join(foreign, 'db'))
    await db.put('someone', 'else')
    await db.close()
    assertCleanFailure(t, await runCli(['ls', '--data', foreign], { env }), [foreign, /not an imgswarm store/])
    await assertIntact(t, env, ref, scratch)
  })

  t.test('the data dir in use by another imgswarm process', async t => {
    const lock = join(data, 'db', 'LOCK')
    // A real imgswarm holds the store: an import from a pipe that the test keeps open.
    const holder = startCli(t, ['import', '-', '--name', 'from-pipe'], env)
    const piped = seededBytes(1024 * 1024 + 9, 'held')
    holder.child.stdin!.write(piped.subarray(0, 1000))
    t.ok(await waitFor(async () => await hasOpen(holder.child.pid!, lock), 20_000), 'the importing process holds the LOCK')
    const busy = [/in use by another imgswarm process/, data]
    const out = join(scratch, 'busy-out')
    for (const args of [['ls'], ['ls', '--json'], ['import', join(dir, 'img')], ['export', ref, '-o', out], ['inspect', ref], ['rm', ref], ['pin', ref], ['gc'], ['verify']]) {
      assertCleanFailure(t, await runCli(args, { env }), busy)
    }
    t.same(await readdir(scratch).catch(() => []), [], 'no output file was written')
    // A wrong path is reported as such, before the store is even tried.
    const missing = join(dir, 'typo.img')
    assertCleanFailure(t, await runCli(['import', missing], { env }), [missing, /no such file/])
    holder.child.stdin!.end(piped.subarray(1000))
    const held = await holder.done
    t.equal(held.code, 0, `the import that held the store completes: ${held.stderr}`)
    const states = await listStates(env)
    t.equal(states.get(held.stdout.trim()), 'available', 'and its image is available')
    await assertIntact(t, env, held.stdout.trim(), scratch)
    await assertIntact(t, env, ref, scratch)

    // A program holding the store through the library.
    const node = await LocalNode.open({ dir: data })
    t.teardown(async () => { await node.close().catch(() => {}) })
    assertCleanFailure(t, await runCli(['ls'], { env }), busy)
    assertCleanFailure(t, await runCli(['import', join(dir, 'img')], { env }), busy)
    await node.close()
    await assertIntact(t, env, ref, scratch)
  })
})
