// Issue 2, item 5: bad input gets one clear line on stderr and a non-zero exit, and nothing already
// stored is lost. This file covers malformed, unknown and ambiguous REFs and bad export targets.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { LevelStore } from '../src/store/level-store.js'
import { runCli } from './helpers/cli.js'
import { assertCleanFailure, assertIntact, importOk, listStates, storeWithImage } from './helpers/failure.js'

t.test('bad REFs and export targets', async t => {
  const { dir, scratch, env, ref } = await storeWithImage(t, 'bad-input', 3 * 1024 * 1024 + 5, ['--name', 'keep-me'])
  const hex = ref.slice('sha256:'.length)

  t.test('malformed and unknown REFs, for every command that takes one', async t => {
    const out = join(scratch, 'never-written')
    const zeros = 'sha256:' + '0'.repeat(64)
    const unknownCid = 'bafyreibeu5uk4mumtccyrknplblk6j7kazl7dfsf4gjodao56jhnpb3u64'
    const cases: Array<[string, Array<string | RegExp>]> = [
      // Text of no other form is a name (DESIGN.md's grammar ends with it).
      ['not-a-ref', [/no image named not-a-ref/]],
      [hex.slice(0, 11), [/no image named/, /a hex prefix needs at least 12 digits/]],
      ['sha256:' + hex.slice(0, 63) + 'g', [/invalid image reference/]],
      ['sha256:' + hex + '00', [/invalid image reference/]],
      [zeros, [/no image/, zeros]],
      ['000000000000', [/no image matches the prefix 000000000000/]],
      [unknownCid, [/no image with manifest/, unknownCid]]
    ]
    // Every kind of bad REF through export; a malformed and an unknown one through every other command.
    for (const [i, [bad, mentions]] of cases.entries()) {
      const commands = i === 0 || i === 4
        ? [['export', bad, '-o', out], ['inspect', bad], ['rm', bad], ['pin', bad], ['unpin', bad], ['verify', bad]]
        : [['export', bad, '-o', out]]
      for (const args of commands) assertCleanFailure(t, await runCli(args, { env }), mentions, { code: 1 })
    }
    t.same(await readdir(scratch).catch(() => []), [], 'no output file was written')
    await assertIntact(t, env, ref, scratch)
  })

  t.test('export into a missing directory, or onto a directory', async t => {
    const target = join(dir, 'missing-dir', 'out.img')
    assertCleanFailure(t, await runCli(['export', ref, '-o', target], { env }), [target, /does not exist/])
    t.same(await readdir(dir).then(names => names.filter(n => n === 'missing-dir')), [], 'the directory was not created')
    assertCleanFailure(t, await runCli(['export', ref, '-o', dir], { env }), [dir, /is a directory/])
    await assertIntact(t, env, ref, scratch)
  })

  t.test('an ambiguous prefix; an image whose chunks do not add up to its digest', async t => {
    // Two digests that share 12 hex digits cannot be made from real content, so a twin record is
    // written through the store API: the same manifest under a digest that differs in the last byte.
    const adata = join(dir, 'ambiguous')
    const aenv = { IMGSWARM_DATA: adata }
    const aref = await importOk(t, aenv, join(dir, 'img'))
    const twinHex = hex.slice(0, 62) + (hex.slice(62) === 'ff' ? '00' : 'ff')
    const store = await LevelStore.open({ dir: adata })
    try {
      const manifest = await store.getManifest(await store.resolve(aref))
      const now = new Date().toISOString()
      await store.commitImage({ ...manifest, digest: Buffer.from(twinHex, 'hex') }, { state: 'available', pinned: false, created: now, lastAccess: now })
    } finally {
      await store.close()
    }
    const twin = `sha256:${twinHex}`
    const prefix = hex.slice(0, 12)
    const out = join(scratch, 'ambiguous-out')
    for (const args of [['export', prefix, '-o', out], ['inspect', prefix], ['rm', prefix], ['pin', prefix], ['verify', prefix]]) {
      assertCleanFailure(t, await runCli(args, { env: aenv }), [/matches more than one image/, prefix, /more digits/])
    }
    t.same(await readdir(scratch).catch(() => []), [], 'no output file was written')

    const twinOut = join(scratch, 'twin-out')
    assertCleanFailure(t, await runCli(['export', twin, '-o', twinOut], { env: aenv }), [/hashes to/, ref])
    t.same(await readdir(scratch).catch(() => []), [], 'no output file, and no temporary file, for an image that hashes wrong')
    const piped = await runCli(['export', twin, '-o', '-'], { env: aenv })
    t.not(piped.code, 0, 'export to stdout of a bad image exits non-zero')
    t.equal((await listStates(aenv)).get(twin), 'failed', 'the bad image is now marked failed')
    await assertIntact(t, aenv, aref, scratch)
    await assertIntact(t, env, ref, scratch)
  })

})
