import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { connect, createServer, Socket, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { ApiAccess } from '../src/api/access.js'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { UsageError } from '../src/errors.js'
import { asUserUnavailable, curlAs } from './helpers/as-user.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes, streamOf } from './helpers/data.js'
import { startDaemon } from './helpers/daemons.js'

const unavailable = asUserUnavailable()

/** A world-traversable directory (temp dirs are 0700, which would stop nobody before the API does). */
async function openDir (t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = await tempDir(t)
  await chmod(dir, 0o755)
  return dir
}

/** A plug-in module that leaves a mark if it is ever loaded. */
async function trapModule (dir: string): Promise<{ module: string, mark: string }> {
  const mark = join(dir, 'pwned')
  const module = join(dir, 'x.mjs')
  await writeFile(module, `import { writeFileSync } from 'node:fs'\nwriteFileSync(${JSON.stringify(mark)}, 'loaded')\nexport default () => { throw new Error('no') }\n`)
  return { module, mark }
}

t.test('a local user with no grant can neither read images nor change anything', { skip: unavailable }, async t => {
  const d = await startDaemon(t, { dir: await openDir(t) })
  const { record } = await d.client.importStream(streamOf(seededBytes(256 * 1024, 'secret')))
  const base = `http://127.0.0.1:${(d.client.address as { port: number }).port}`
  const trap = await trapModule(await openDir(t))

  const shadow = await curlAs('nobody', ['-X', 'POST', `${base}/v1/images?path=/etc/shadow`])
  t.equal(shadow.status, 401, 'import of /etc/shadow: 401')
  t.match(JSON.parse(shadow.body), { error: { code: 'IMGSWARM_UNAUTHORIZED' } })
  t.equal((await curlAs('nobody', [`${base}/v1/images/${record.ref}`])).status, 401, 'an image\'s bytes: 401')
  t.equal((await curlAs('nobody', [`${base}/v1/images`])).status, 401, 'the image list: 401')
  const publish = await curlAs('nobody', ['-X', 'POST', '-d', JSON.stringify({ origin: trap.module }), `${base}/v1/images/${record.ref}/publish`])
  t.equal(publish.status, 401, 'publish to a module path: 401')
  t.equal((await curlAs('nobody', ['-X', 'DELETE', `${base}/v1/images/${record.ref}?force=true`])).status, 401, 'rm: 401')
  await t.rejects(stat(trap.mark), { code: 'ENOENT' }, 'the module was never loaded')
  t.equal((await d.client.inspect(record.ref)).state, 'available', 'the image is still there')

  for (const open of ['/healthz', '/metrics', '/v1/node']) t.equal((await curlAs('nobody', [`${base}${open}`])).status, 200, `${open} answers anyone: it carries no image bytes`)

  const tokenFile = join(d.dir, 'api.token')
  t.equal((await stat(tokenFile)).mode & 0o777, 0o640, 'api.token is 0640')
  const token = (await readFile(tokenFile, 'utf8')).trim()
  t.equal((await curlAs('nobody', ['-H', `Authorization: Bearer ${token}`, `${base}/v1/images`])).status, 200, 'with the token: 200')
  const wrong = await curlAs('nobody', ['-H', 'Authorization: Bearer not-the-token-at-all', `${base}/v1/images`])
  t.equal(wrong.status, 403, 'a wrong token: 403')
  t.match(JSON.parse(wrong.body), { error: { code: 'IMGSWARM_FORBIDDEN' } })
  t.equal((await curlAs('root', [`${base}/v1/images`])).status, 200, 'root, with no token: 200')
})

t.test('--api-group grants its members by their uid, with no token', { skip: unavailable }, async t => {
  const d = await startDaemon(t, { dir: await openDir(t), config: { apiGroup: 'nogroup' } })
  const base = `http://127.0.0.1:${(d.client.address as { port: number }).port}`
  t.equal((await curlAs('nobody', [`${base}/v1/images`])).status, 200, 'nobody is in nogroup: granted')
  t.equal((await stat(join(d.dir, 'api.token'))).gid, 65534, 'the token file belongs to the group')
  const data = await stat(d.dir)
  t.equal(data.gid, 65534, 'the data dir belongs to the group')
  t.equal(data.mode & 0o777, 0o750, 'and is 0750: the group may enter it (to read the token), not write')
})

t.test('the unix socket: 0660, owner and --api-group only', { skip: unavailable }, async t => {
  const dir = await openDir(t)
  const plain = await startDaemon(t, { dir: await openDir(t), config: { api: `unix:${join(dir, 'a.sock')}` } })
  const st = await stat(join(dir, 'a.sock'))
  t.equal(st.mode & 0o777, 0o660, 'socket mode 0660')
  const refused = await curlAs('nobody', ['--unix-socket', join(dir, 'a.sock'), 'http://x/v1/images'])
  t.equal(refused.code, 7, 'nobody cannot even connect')
  t.same(await plain.client.list(), [], 'root can')
  await startDaemon(t, { dir: await openDir(t), config: { api: `unix:${join(dir, 'b.sock')}`, apiGroup: 'nogroup' } })
  t.equal((await stat(join(dir, 'b.sock'))).gid, 65534, 'the socket\'s group is the API group')
  t.equal((await curlAs('nobody', ['--unix-socket', join(dir, 'b.sock'), 'http://x/v1/images'])).status, 200, 'a member of the group is served')
})

t.test('granted callers import only from allowed directories and publish only to configured origins', async t => {
  const allowed = await tempDir(t)
  const outside = await tempDir(t)
  const originDir = await tempDir(t)
  const trap = await trapModule(outside)
  const image = seededBytes(300 * 1024, 'allowed file')
  await writeFile(join(allowed, 'ok.img'), image)
  await writeFile(join(outside, 'secret'), 'root only')
  await symlink(join(outside, 'secret'), join(allowed, 'link'))
  await mkdir(join(allowed, 'sub'))

  const none = await startDaemon(t)
  await t.rejects(none.client.call('POST', `/v1/images?path=${encodeURIComponent(join(allowed, 'ok.img'))}`), { code: 'IMGSWARM_FORBIDDEN' }, 'no --import-dir: no path imports at all')

  const originUrl = pathToFileURL(originDir).href
  const d = await startDaemon(t, { config: { importDirs: [allowed], origin: originUrl } })
  const imported = await d.client.call<any>('POST', `/v1/images?path=${encodeURIComponent(join(allowed, 'ok.img'))}`)
  t.equal(imported.record.size, image.length, 'a file inside an allowed directory imports')
  for (const bad of ['/etc/shadow', join(allowed, 'link'), join(allowed, 'sub', '..', '..', outside.split('/').pop()!, 'secret')]) {
    await t.rejects(d.client.call('POST', `/v1/images?path=${encodeURIComponent(bad)}`), { code: 'IMGSWARM_FORBIDDEN' }, `${bad} is refused`)
  }
  const ref = imported.record.ref as string
  await t.rejects(d.client.call('POST', `/v1/images/${ref}/publish`, { origin: trap.module }), { code: 'IMGSWARM_FORBIDDEN' }, 'publish to a module path is refused')
  await t.rejects(d.client.call('POST', `/v1/images/${ref}/publish`, { origin: 'file:///etc/anything' }), { code: 'IMGSWARM_FORBIDDEN' }, 'publish to a directory the caller names is refused')
  await t.rejects(stat(trap.mark), { code: 'ENOENT' }, 'the module was never loaded')
  await t.rejects(stat('/etc/anything'), { code: 'ENOENT' }, 'nothing was written there')
  const published = await d.client.call<any>('POST', `/v1/images/${ref}/publish`, {})
  t.equal(published.origin, originUrl, 'publish with no origin goes to the daemon\'s own')
  t.equal((await stat(join(originDir, 'sha256', ref.slice(7)))).size, image.length, 'and the object is there')
})

t.test('bad requests answer 4xx and the daemon stays up', async t => {
  const d = await startDaemon(t)
  const base = `http://127.0.0.1:${(d.client.address as { port: number }).port}`
  const target = await curlAs('root', ['--request-target', 'http://[', base])
  t.equal(target.status, 400, 'a request target that is no URL: 400')
  t.equal((await curlAs('root', [`${base}/v1/images/%zz/info`])).status, 400, 'bad percent-encoding: 400')
  for (const path of ['/v1/verify', '/v1/fetch', `/v1/images/${'a'.repeat(64)}/publish`]) {
    const res = await curlAs('root', ['-X', 'POST', '-d', 'null', `${base}${path}`])
    t.equal(res.status, 400, `a null body to ${path}: 400`)
    t.match(JSON.parse(res.body), { error: { code: 'IMGSWARM_USAGE', message: /JSON object/ } })
  }
  t.equal((await curlAs('root', [`${base}/healthz`])).status, 200, 'still up')
})

t.test('an API beyond loopback takes only its token, and will not start without one', async t => {
  await t.rejects(startDaemon(t, { config: { api: '0.0.0.0:0' } }), UsageError, 'no --api-token-file: refused')
  const tokenFile = join(await tempDir(t), 'token')
  const d = await startDaemon(t, { config: { api: '0.0.0.0:0', apiTokenFile: tokenFile } })
  const port = (d.client.address as { port: number }).port
  const local = new ApiClient(parseApiAddress(`127.0.0.1:${port}`), { token: '' })
  await t.rejects(local.list(), { code: 'IMGSWARM_UNAUTHORIZED' }, 'root on 127.0.0.1 without the token: refused')
  const withToken = new ApiClient(parseApiAddress(`127.0.0.1:${port}`), { token: (await readFile(tokenFile, 'utf8')).trim() })
  t.same(await withToken.list(), [], 'with the token: served')
})

t.test('with --api-tls-cert and --api-tls-key the API speaks HTTPS', { skip: asUserUnavailable() ?? (existsSync('/usr/bin/openssl') ? undefined : 'needs openssl') }, async t => {
  const dir = await tempDir(t)
  const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')]
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  const tokenFile = join(dir, 'token')
  const d = await startDaemon(t, { config: { api: '0.0.0.0:0', apiTokenFile: tokenFile, apiTlsCert: cert, apiTlsKey: key } })
  const port = (d.client.address as { port: number }).port
  const token = (await readFile(tokenFile, 'utf8')).trim()
  const ok = await curlAs('root', ['--cacert', cert, '-H', `Authorization: Bearer ${token}`, `https://127.0.0.1:${port}/v1/images`])
  t.equal(ok.status, 200, 'HTTPS with the token: served')
  const plain = await curlAs('root', ['-H', `Authorization: Bearer ${token}`, `http://127.0.0.1:${port}/v1/images`])
  t.not(plain.status, 200, 'plain HTTP is not served')
})

t.test('the kernel grant follows the listener\'s kind: a TCP caller with no readable address is refused', async t => {
  const access = new ApiAccess({ ownUid: process.getuid?.() ?? 0, exposed: false })
  const request = (socket: Socket): IncomingMessage => ({ method: 'GET', headers: {}, socket }) as unknown as IncomingMessage
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const accepted = async (): Promise<{ client: Socket, served: Socket }> => {
    const served = once(server, 'connection') as Promise<[Socket]>
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1')
    await once(client, 'connect')
    t.teardown(() => { client.destroy() })
    return { client, served: (await served)[0] }
  }

  const live = await accepted()
  await access.check(request(live.served), '/v1/images', 'tcp')
  t.pass('a loopback caller of our own uid is granted by its socket\'s owner')

  const reset = await accepted()
  reset.served.destroy() // as after a reset: the peer's address can no longer be read
  t.equal(reset.served.remoteAddress, undefined, 'the address is unreadable')
  await t.rejects(access.check(request(reset.served), '/v1/images', 'tcp'), { code: 'IMGSWARM_UNAUTHORIZED' }, 'on TCP: refused, not taken for a unix socket')
  await access.check(request(new Socket()), '/v1/images', 'unix')
  t.pass('on a unix socket the kernel already checked the mode: granted')
})
