/**
 * A private OpenStack Glance (image API v2) for the tests, started from Debian's `glance-api` as this
 * process's child on 127.0.0.1, in a temporary directory: sqlite database, file store, one process.
 *
 * Without Keystone, Glance treats every caller as admin. To test who may read what, the paste
 * pipeline here puts a small identity shim in Keystone's place: it maps a few fixed tokens to a
 * user, a project and roles (the headers keystonemiddleware would set) and refuses any other token
 * with 401, and Glance's own `context` middleware and policies do the rest. `/versions` and
 * `/healthcheck` need no token, as with Keystone.
 *
 * Requests are counted by a small proxy in front of Glance (`countingUrl`): the tests point nodes
 * at it and read how many image files Glance served, and how many bytes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { accessSync, constants, existsSync, rmSync } from 'node:fs'
import { appendFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import http, { createServer, type Server } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const GLANCE_PACKAGES = 'glance-api python3-glanceclient'
export const PYTHON = '/usr/bin/python3'

/** Tokens the identity shim knows: an admin, and two ordinary members of two projects. */
export const TOKENS = {
  admin: { token: 'admin-token', user: 'admin', project: 'project-admin', roles: ['admin', 'member', 'reader'] },
  alice: { token: 'alice-token', user: 'alice', project: 'project-a', roles: ['member', 'reader'] },
  bob: { token: 'bob-token', user: 'bob', project: 'project-b', roles: ['member', 'reader'] }
} as const

export interface GlanceImageInfo {
  id: string
  size: number
  status: string
  checksum: string
  os_hash_algo: string
  os_hash_value: string
  owner: string
  visibility: string
}

export interface Glance {
  /** `http://127.0.0.1:<port>` of glance-api itself. */
  url: string
  /** The counting proxy in front of it. */
  countingUrl: string
  /** Requests the proxy passed for image files (`GET /v2/images/{id}/file`), and their bytes. */
  fileRequests: () => number
  fileBytes: () => number
  /** The `X-Auth-Token` of each image file request, in order. */
  fileTokens: () => string[]
  /** Makes `token` one the identity shim knows (as `who`), or, with undefined, revokes it. */
  setToken: (token: string, who: { user: string, project: string, roles: readonly string[] } | undefined) => Promise<void>
  /** The file store's directory: an image's bytes are in `<storeDir>/<id>`. */
  storeDir: string
  startupMs: number
  /** Creates and uploads an image as `who`; resolves once it is active. */
  upload: (bytes: Uint8Array, options?: { name?: string, token?: string, visibility?: string, diskFormat?: string }) => Promise<GlanceImageInfo>
  stop: () => Promise<void>
}

/** Why glance-api cannot start here, or undefined when it can. */
export function glanceMissing (): string | undefined {
  const missing = ['glance-api', 'glance-manage'].filter(b => which(b) === undefined)
  if (!existsSync(PYTHON)) missing.push(PYTHON)
  if (!existsSync('/etc/glance/glance-api-paste.ini')) missing.push('/etc/glance/glance-api-paste.ini')
  if (missing.length > 0) return `glance-api not installed (missing ${missing.join(', ')}): apt-get install -y ${GLANCE_PACKAGES}`
  return undefined
}

/** Why the `glance` command (python3-glanceclient) cannot run here, or undefined. */
export function glanceClientMissing (): string | undefined {
  return which('glance') === undefined ? `the glance command is not installed: apt-get install -y python3-glanceclient` : undefined
}

export function which (name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/sbin'])) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {}
  }
  return undefined
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createNetServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

// The token table is read at every request, so a test can revoke a token while Glance runs.
const SHIM_PY = `
import json, os
_DROP = ('HTTP_X_IDENTITY_STATUS', 'HTTP_X_USER_ID', 'HTTP_X_USER', 'HTTP_X_PROJECT_ID', 'HTTP_X_TENANT_ID',
         'HTTP_X_TENANT', 'HTTP_X_ROLES', 'HTTP_X_ROLE', 'HTTP_X_SERVICE_CATALOG', 'HTTP_X_USER_DOMAIN_ID',
         'HTTP_X_PROJECT_DOMAIN_ID', 'HTTP_X_SERVICE_ROLES')

def filter_factory(global_conf, **local_conf):
    def wrap(app):
        def shim(environ, start_response):
            for k in _DROP:
                environ.pop(k, None)
            with open(os.environ['IMGSWARM_GLANCE_TOKENS']) as f:
                who = json.load(f).get(environ.get('HTTP_X_AUTH_TOKEN', ''))
            if who is None:
                body = b'{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}'
                start_response('401 Unauthorized', [('Content-Type', 'application/json'), ('Content-Length', str(len(body)))])
                return [body]
            environ['HTTP_X_IDENTITY_STATUS'] = 'Confirmed'
            environ['HTTP_X_USER_ID'] = who['user']
            environ['HTTP_X_PROJECT_ID'] = who['project']
            environ['HTTP_X_TENANT_ID'] = who['project']
            environ['HTTP_X_ROLES'] = ','.join(who['roles'])
            return app(environ, start_response)
        return shim
    return wrap
`

function conf (dir: string, port: number, hashing: string): string {
  return `[DEFAULT]
bind_host = 127.0.0.1
bind_port = ${port}
workers = 0
enabled_backends = fs:file
hashing_algorithm = ${hashing}
log_file = ${dir}/glance-api.log
use_stderr = false
debug = false
[database]
connection = sqlite:///${dir}/glance.sqlite
[paste_deploy]
flavor = shim
config_file = ${dir}/glance-api-paste.ini
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = ${dir}/images
[os_glance_staging_store]
filesystem_store_datadir = ${dir}/staging
[os_glance_tasks_store]
filesystem_store_datadir = ${dir}/tasks
[oslo_concurrency]
lock_path = ${dir}/locks
[oslo_policy]
policy_file = ${dir}/policy.yaml
`
}

/**
 * Starts glance-api (5–20 s here). `hashing` is Glance's `hashing_algorithm` for new images
 * (sha512 by default, as in a stock Glance).
 */
export async function startGlance (options: { hashing?: string, timeoutMs?: number } = {}): Promise<Glance> {
  const why = glanceMissing()
  if (why !== undefined) throw new Error(why)
  const t0 = Date.now()
  // 5–20 s on an idle machine; far more on a loaded CI runner.
  const deadline = t0 + (options.timeoutMs ?? 180_000)
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-glance-'))
  let child: ChildProcess | undefined
  let watchdog: ChildProcess | undefined
  let proxy: Server | undefined
  let stopped = false
  const onExit = (): void => {
    if (child?.pid !== undefined && child.exitCode === null) try { process.kill(child.pid, 'SIGKILL') } catch {}
    try { rmSync(dir, { recursive: true, force: true }) } catch {}
  }
  process.once('exit', onExit)
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    process.off('exit', onExit)
    if (proxy !== undefined) {
      proxy.closeAllConnections()
      await new Promise(resolve => proxy!.close(resolve))
    }
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await waitExit(child, 5000)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await waitExit(child, 2000)
    }
    if (watchdog?.pid !== undefined && watchdog.exitCode === null) watchdog.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const port = await freePort()
    for (const sub of ['images', 'staging', 'tasks', 'locks']) await mkdir(join(dir, sub), { recursive: true })
    await writeFile(join(dir, 'glance-api.conf'), conf(dir, port, options.hashing ?? 'sha512'))
    const paste = await readFile('/etc/glance/glance-api-paste.ini', 'utf8')
    await writeFile(join(dir, 'glance-api-paste.ini'), `${paste}
[pipeline:glance-api-shim]
pipeline = cors healthcheck http_proxy_to_wsgi versionnegotiation identityshim context rootapp

[filter:identityshim]
paste.filter_factory = imgswarm_identity_shim:filter_factory
`)
    await writeFile(join(dir, 'imgswarm_identity_shim.py'), SHIM_PY)
    const tokens: Record<string, { user: string, project: string, roles: readonly string[] }> = Object.fromEntries(Object.values(TOKENS).map(w => [w.token, w]))
    // Written whole and renamed, so the shim never reads half a table.
    const writeTokens = async (): Promise<void> => {
      await writeFile(join(dir, 'tokens.json.new'), JSON.stringify(tokens))
      await rename(join(dir, 'tokens.json.new'), join(dir, 'tokens.json'))
    }
    await writeTokens()
    const setToken = async (token: string, who: { user: string, project: string, roles: readonly string[] } | undefined): Promise<void> => {
      if (who === undefined) delete tokens[token]
      else tokens[token] = who
      await writeTokens()
    }
    // Images may be made public by their owner (the tests' admin makes them so).
    await writeFile(join(dir, 'policy.yaml'), '"publicize_image": ""\n')
    const env = { ...process.env, PYTHONPATH: dir, PYTHONDONTWRITEBYTECODE: '1', EVENTLET_NO_GREENDNS: 'yes', IMGSWARM_GLANCE_TOKENS: join(dir, 'tokens.json') }
    const sync = spawnSync('glance-manage', ['--config-file', join(dir, 'glance-api.conf'), 'db_sync'], { env, encoding: 'utf8', timeout: 120_000 })
    if (sync.status !== 0) throw new Error(`glance-manage db_sync failed: ${(sync.stderr ?? sync.error?.message ?? '').split('\n').slice(-8).join('\n')}`)
    child = spawn('glance-api', ['--config-file', join(dir, 'glance-api.conf')], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.on('data', d => { appendFile(join(dir, 'glance-api.out'), d).catch(() => {}) })
    child.stderr?.on('data', d => { appendFile(join(dir, 'glance-api.out'), d).catch(() => {}) })
    child.on('error', () => {})
    watchdog = startWatchdog(dir, child)
    const url = `http://127.0.0.1:${port}`
    await waitHealthy(url, deadline, () => child!.exitCode !== null ? `glance-api exited (${child!.exitCode})` : undefined)

    let files = 0
    let fileBytes = 0
    const fileTokens: string[] = []
    const agent = new http.Agent({ keepAlive: true })
    proxy = createServer((req, res) => {
      const isFile = req.method === 'GET' && /^\/v2\/images\/[^/]+\/file$/.test(req.url ?? '')
      if (isFile) {
        files++
        fileTokens.push(String(req.headers['x-auth-token'] ?? ''))
      }
      const up = http.request(`${url}${req.url ?? '/'}`, { method: req.method, headers: req.headers, agent }, answer => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.on('data', (d: Buffer) => { if (isFile) fileBytes += d.length })
        answer.pipe(res)
      })
      up.on('error', () => { res.destroy() })
      req.pipe(up)
    })
    await new Promise<void>(resolve => proxy!.listen(0, '127.0.0.1', resolve))
    const countingUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`

    const upload = async (bytes: Uint8Array, o: { name?: string, token?: string, visibility?: string, diskFormat?: string } = {}): Promise<GlanceImageInfo> => {
      const token = o.token ?? TOKENS.admin.token
      const created = await call(url, 'POST', '/v2/images', token, JSON.stringify({ name: o.name ?? 'test image', disk_format: o.diskFormat ?? 'raw', container_format: 'bare', visibility: o.visibility ?? 'private' }), 'application/json')
      if (created.status !== 201) throw new Error(`Glance image create: HTTP ${created.status} ${created.body}`)
      const id = (JSON.parse(created.body) as { id: string }).id
      const put = await call(url, 'PUT', `/v2/images/${id}/file`, token, bytes, 'application/octet-stream')
      if (put.status !== 204) throw new Error(`Glance image upload: HTTP ${put.status} ${put.body}`)
      const got = await call(url, 'GET', `/v2/images/${id}`, token)
      const info = JSON.parse(got.body) as GlanceImageInfo
      if (info.status !== 'active') throw new Error(`Glance image ${id} is ${info.status} after its upload`)
      return info
    }
    return { url, countingUrl, fileRequests: () => files, fileBytes: () => fileBytes, fileTokens: () => [...fileTokens], setToken, storeDir: join(dir, 'images'), startupMs: Date.now() - t0, upload, stop }
  } catch (err) {
    const log = (await readFile(join(dir, 'glance-api.log'), 'utf8').catch(() => '')) + (await readFile(join(dir, 'glance-api.out'), 'utf8').catch(() => ''))
    await stop()
    throw new Error(`Glance did not start: ${(err as Error).message}\n${log.trim().split('\n').slice(-15).join('\n')}`, { cause: err })
  }
}

/** One request to Glance (or the node's endpoint): status, headers and body as text. */
export async function call (base: string, method: string, path: string, token?: string, body?: string | Uint8Array, contentType?: string, extra: Record<string, string> = {}): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string }> {
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...extra }
    if (token !== undefined) headers['x-auth-token'] = token
    if (contentType !== undefined) headers['content-type'] = contentType
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body)
    const req = http.request(`${base}${path}`, { method, headers }, res => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('latin1') }))
      res.on('error', reject)
    })
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path}: no answer in 60 s`)))
    req.on('error', reject)
    req.end(body)
  })
}

async function waitHealthy (url: string, deadline: number, dead: () => string | undefined): Promise<void> {
  let last = ''
  for (;;) {
    const why = dead()
    if (why !== undefined) throw new Error(why)
    if (Date.now() > deadline) throw new Error(`no healthy answer before the deadline (last: ${last})`)
    try {
      const r = await call(url, 'GET', '/healthcheck')
      if (r.status === 200) return
      last = `HTTP ${r.status}`
    } catch (err) {
      last = (err as Error).message
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

async function waitExit (child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>(resolve => {
    const timer = setTimeout(resolve, ms)
    child.once('exit', () => { clearTimeout(timer); resolve() })
  })
}

/** A detached shell that kills glance-api and removes its directory if this process dies without stopping it. */
function startWatchdog (dir: string, child: ChildProcess): ChildProcess {
  const script = `
while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done
for sig in TERM KILL; do grep -qs "$1" /proc/${child.pid ?? 0}/cmdline && kill -$sig ${child.pid ?? 0} 2>/dev/null; sleep 2; done
rm -rf "$1"
`
  const w = spawn('/bin/sh', ['-c', script, 'imgswarm-glance-watchdog', dir], { detached: true, stdio: 'ignore' })
  w.unref()
  return w
}


