import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { OriginAccessDeniedError, OriginConfigError } from '../src/errors.js'
import { fileOrigin } from '../src/origin/file-origin.js'
import { seededBytes } from './helpers/data.js'
import { collect, originSuite, sha256Hex } from './suites/origin.js'

/** Writes an object of the origin layout straight into `dir`, as an operator's copy would. */
export async function putFile (dir: string, name: string, bytes: Uint8Array): Promise<void> {
  await mkdir(join(dir, 'sha256'), { recursive: true })
  await writeFile(join(dir, 'sha256', name), bytes)
}

originSuite(t, {
  name: 'file',
  setup: async tuning => {
    const dir = await mkdtemp(join(tmpdir(), 'imgswarm-origin-file-'))
    return {
      origin: fileOrigin(pathToFileURL(dir), tuning),
      put: async (hex, bytes) => { await putFile(dir, hex, bytes) },
      putManifest: async (hex, bytes) => { await putFile(dir, `${hex}.manifest`, bytes) },
      teardown: async () => { await rm(dir, { recursive: true, force: true }) }
    }
  }
})

t.test('file: writes leave no temporary files, whether they succeed or fail', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-origin-file-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const origin = fileOrigin(pathToFileURL(dir).href)
  const data = seededBytes(100_000, 'tmp')
  const source = async function * (): AsyncGenerator<Uint8Array> { yield data }
  await origin.write?.(sha256Hex(data), source())
  await t.rejects(async () => await origin.write?.(sha256Hex(Buffer.from('x')), source()), { name: 'DigestMismatchError' })
  t.same(await readdir(join(dir, 'sha256')), [sha256Hex(data)], 'only the finished image is in the directory')
  t.ok((await collect(origin.read(sha256Hex(data)))).equals(data))
})

t.test('file: a directory it may not read is OriginAccessDeniedError', { skip: process.getuid?.() === 0 ? 'running as root: permissions do not apply' : false }, async t => {
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-origin-file-'))
  t.teardown(async () => { await chmod(join(dir, 'sha256'), 0o755); await rm(dir, { recursive: true, force: true }) })
  const data = Buffer.from('locked')
  await putFile(dir, sha256Hex(data), data)
  await chmod(join(dir, 'sha256'), 0)
  await t.rejects(collect(fileOrigin(pathToFileURL(dir)).read(sha256Hex(data))), OriginAccessDeniedError)
})

t.test('file: URLs it cannot use are OriginConfigError', async t => {
  t.throws(() => fileOrigin('file://server/share'), OriginConfigError, 'a remote host')
  t.throws(() => fileOrigin('file:///srv/images?retries=x'), OriginConfigError, 'a malformed parameter')
  t.throws(() => fileOrigin('file:///srv/images?colour=blue'), OriginConfigError, 'an unknown parameter')
  t.throws(() => fileOrigin('http://example.com/'), OriginConfigError, 'another scheme')
  t.equal(fileOrigin('file:///srv/images?retries=2').url, 'file:///srv/images')
})
