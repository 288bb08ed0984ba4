import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { runCli, tempDir } from './helpers/cli.js'
import { writeRandomFile } from './helpers/data.js'

async function fileRef (path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const piece of createReadStream(path)) h.update(piece as Buffer)
  return `sha256:${h.digest('hex')}`
}

t.test('a 200 MiB random image round-trips through the CLI byte-exact', async t => {
  const dir = await tempDir(t)
  const env = { IMGSWARM_DATA: join(dir, 'data') }
  const ref = await writeRandomFile(join(dir, 'big.img'), 200 * 1024 * 1024)
  const imp = await runCli(['import', join(dir, 'big.img'), '--type', 'machine'], { env })
  t.equal(imp.code, 0, imp.stderr)
  t.equal(imp.stdout.trim(), ref)
  const exp = await runCli(['export', ref, '-o', join(dir, 'out.img')], { env })
  t.equal(exp.code, 0, exp.stderr)
  t.equal(await fileRef(join(dir, 'out.img')), ref, 'exported file hashes to the ref')
  const v = await runCli(['verify'], { env })
  t.equal(v.code, 0, v.stderr)
  t.match(v.stdout, /verified 1 images, \d+ chunks, 200 MiB: all good/)
})

t.test('stdin import, stdout export, ls and inspect --json', async t => {
  const dir = await tempDir(t)
  const env = { IMGSWARM_DATA: join(dir, 'data') }
  const input = Buffer.from('kernel bytes '.repeat(10000))
  const imp = await runCli(['import', '-', '--type', 'kernel', '--name', 'vmlinuz-6.1', '--format', 'raw'], { env, input })
  t.equal(imp.code, 0, imp.stderr)
  const ref = imp.stdout.trim()
  const out = await runCli(['export', ref.slice(0, 19), '-o', '-'], { env })
  t.equal(out.code, 0, out.stderr)
  t.equal(out.stdout, input.toString(), 'stdout carries the image')
  const ls = JSON.parse((await runCli(['ls', '--json'], { env })).stdout)
  t.match(ls, [{ ref, type: 'kernel', name: 'vmlinuz-6.1', format: 'raw', state: 'available', size: input.length }])
  const info = JSON.parse((await runCli(['inspect', ref], { env })).stdout)
  for (const key of ['ref', 'size', 'type', 'name', 'state', 'chunks', 'manifest', 'sharedBytes', 'uniqueBytes']) t.ok(key in info, `inspect has ${key}`)
  t.equal(info.uniqueBytes, input.length)
  const pin = await runCli(['pin', ref], { env })
  t.equal(pin.stdout.trim(), `pinned ${ref}`)
  const rm = await runCli(['rm', ref], { env })
  t.equal(rm.code, 1)
  t.match(rm.stderr, /^imgswarm rm: sha256:[0-9a-f]{64} is pinned; unpin it first or use --force\n$/)
  t.equal((await runCli(['unpin', ref], { env })).code, 0)
  t.match((await runCli(['rm', ref], { env })).stdout, /^removed sha256:[0-9a-f]{64}; freed /)
  t.match((await runCli(['gc'], { env })).stdout, /^freed 0 B in 0 chunks; kept 0 images\n$/)
})

t.test('help and usage errors', async t => {
  const help = await runCli(['--help'])
  t.equal(help.code, 0)
  for (const c of ['import', 'export', 'ls', 'inspect', 'rm', 'pin', 'unpin', 'gc', 'verify']) t.match(help.stdout, new RegExp(`\\n  ${c} `))
  const bad = await runCli(['import', '--bogus', 'x'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /^imgswarm import: Unknown option '--bogus'/)
  t.equal(bad.stderr.split('\n').length, 2, 'one line')
  const unknown = await runCli(['frobnicate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command "frobnicate"/)
})
