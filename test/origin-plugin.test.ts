// The AWS SDK warns on every client that releases after January 2027 need Node 22; the version is pinned.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { OriginConfigError } from '../src/errors.js'
import { openOrigin } from '../src/origin/open-origin.js'
import { memoryStore } from './helpers/origin-plugin.js'
import { collect, originSuite, sha256Hex } from './suites/origin.js'

// The compiled plug-in module, loaded by path exactly as an operator's configuration would name it.
const PLUGIN = fileURLToPath(new URL('./helpers/origin-plugin.js', import.meta.url))

let stores = 0
originSuite(t, {
  name: 'plug-in module',
  setup: async tuning => {
    const name = `suite-${++stores}`
    const store = memoryStore(name)
    return {
      origin: await openOrigin(`${PLUGIN}?store=${name}`, tuning),
      put: async (hex, bytes) => { store.objects.set(hex, bytes) },
      putManifest: async (hex, bytes) => { store.objects.set(`${hex}.manifest`, bytes) },
      breakNextRead: bytes => {
        const fault = { bytes, fired: false }
        store.breakAfter = fault
        return { fired: () => fault.fired }
      },
      teardown: async () => {}
    }
  }
})

t.test('openOrigin: how a plug-in is named', async t => {
  const bytes = Buffer.from('plug-in bytes')
  const hex = sha256Hex(bytes)
  memoryStore('naming').objects.set(hex, bytes)

  const rel = relative(process.cwd(), PLUGIN)
  const byRelative = await openOrigin(`${rel.startsWith('.') ? rel : `./${rel}`}?store=naming`)
  t.ok((await collect(byRelative.read(hex))).equals(bytes), 'a relative module path')

  const byScheme = await openOrigin('mem://naming?store=naming', { plugins: { mem: PLUGIN } })
  t.ok((await collect(byScheme.read(hex))).equals(bytes), 'a scheme mapped to a module in options.plugins')

  const byCwd = await openOrigin('./origin-plugin.js?store=naming', { cwd: join(PLUGIN, '..') })
  t.equal(byCwd.url, 'memory:naming', 'relative paths resolve from options.cwd')
})

t.test('openOrigin: what it refuses, with OriginConfigError', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-origin-plugins-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 'no-default.mjs'), 'export const origin = 1\n')
  await writeFile(join(dir, 'not-an-origin.mjs'), 'export default () => ({ capabilities: { write: true }, stat () {} })\n')
  await writeFile(join(dir, 'throws.mjs'), 'throw new Error("broken plug-in")\n')
  await writeFile(join(dir, 'async.mjs'), `import f from ${JSON.stringify(pathToFileURL(PLUGIN).href)}\nexport default async (url, o) => f(url, o)\n`)

  await t.rejects(openOrigin('nbd://server/export'), { name: 'OriginConfigError', message: /no origin backend for "nbd:"/ }, 'an unknown scheme')
  await t.rejects(openOrigin(join(dir, 'missing.mjs')), { name: 'OriginConfigError', message: /cannot load origin plug-in/ }, 'a missing module')
  await t.rejects(openOrigin(dir), { name: 'OriginConfigError', message: /it is a directory: for a directory origin write file:\/\// }, 'a directory path, with a hint')
  await t.rejects(openOrigin(join(dir, 'throws.mjs')), { name: 'OriginConfigError', message: /broken plug-in/ }, 'a module that fails to load')
  await t.rejects(openOrigin(join(dir, 'no-default.mjs')), { name: 'OriginConfigError', message: /no default-exported factory/ }, 'a module without a default export')
  await t.rejects(openOrigin(join(dir, 'not-an-origin.mjs')), { name: 'OriginConfigError', message: /read, readManifest, write, writeManifest/ }, 'a factory that returns something else')
  await t.rejects(openOrigin('http://127.0.0.1/?nope=1'), OriginConfigError, 'a built-in URL with an unknown parameter')
  const viaAsync = await openOrigin(`${join(dir, 'async.mjs')}?store=x`)
  t.equal(viaAsync.url, 'memory:x', 'an async factory is awaited')
})

t.test('openOrigin: the built-in schemes', async t => {
  const file = await openOrigin('file:///srv/images')
  t.same(file.capabilities, { rangeRead: true, manifests: true, write: true }, 'file: is writable')
  const http = await openOrigin('HTTPS://example.com/images')
  t.same({ ...http.capabilities }, { rangeRead: true, manifests: true, write: false }, 'https: is read-only')
  const s3 = await openOrigin('s3://bucket/prefix?endpoint=http://127.0.0.1:9', { credentials: { accessKeyId: 'a', secretAccessKey: 'b' } })
  t.same(s3.capabilities, { rangeRead: true, manifests: true, write: true }, 's3: is writable')
  for (const o of [file, http, s3]) await o.close?.()
})
