/**
 * A private OpenStack Swift with the s3api middleware: a real S3 server for the tests, started from
 * Debian's packages as this process's children on 127.0.0.1, in a temporary directory.
 *
 * Four Swift servers (account, container, object, proxy with s3api + tempauth) and a memcached
 * (tempauth keeps its tokens there), one-replica rings built in one Python process, logs sent over
 * UDP to a collector here and written to `<dir>/swift.log`. `startSwift()` returns once an S3
 * PUT and GET of a probe object work; `stop()` kills every process and removes the directory. A
 * watchdog shell also does that if this process dies without stopping them (tap timeouts, crashes).
 *
 * Swift's object server keeps metadata in extended attributes: the directory (under the system temp
 * dir, or `IMGSWARM_SWIFT_TMP`) must be on a file system with user xattrs (ext4, xfs; tmpfs only
 * on Linux 6.6+).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { accessSync, constants, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'

/** tempauth's user `test:tester` with key `testing`: the S3 access key is `account:user`, the secret the key. */
export const SWIFT_CREDENTIALS = { accessKeyId: 'test:tester', secretAccessKey: 'testing' }

export const SWIFT_PACKAGES = 'swift swift-proxy swift-account swift-container swift-object memcached'

/** Swift's Python runs on Debian's interpreter, whatever `python3` comes first in PATH (pyenv, venvs). */
const PYTHON = '/usr/bin/python3'
const BINARIES = ['swift-proxy-server', 'swift-account-server', 'swift-container-server', 'swift-object-server', 'memcached']

export interface Swift {
  /** `http://127.0.0.1:<port>` of the proxy: the S3 endpoint (path-style addressing). */
  endpoint: string
  port: number
  region: string
  credentials: { accessKeyId: string, secretAccessKey: string }
  /** A bucket that exists. */
  bucket: string
  /** Milliseconds from the call until an S3 PUT and GET worked. */
  startupMs: number
  dir: string
  stop: () => Promise<void>
}

/** Why Swift cannot start here (binaries or Swift's /etc/swift/swift.conf missing), or undefined when it can. */
export function swiftMissing (): string | undefined {
  const missing = BINARIES.filter(b => which(b) === undefined)
  if (!existsSync(PYTHON)) missing.push(PYTHON)
  // Swift reads its hash path prefix/suffix from this fixed path; the swift package installs it.
  if (!existsSync('/etc/swift/swift.conf')) missing.push('/etc/swift/swift.conf')
  if (missing.length > 0) return `swift not installed (missing ${missing.join(', ')}): apt-get install -y ${SWIFT_PACKAGES}`
  return undefined
}

function which (name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/sbin'])) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {}
  }
  return undefined
}

/** Free TCP ports on 127.0.0.1 (asked of the kernel, then released for the servers to bind). */
async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, async () => await new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => resolve(s))
  })))
  const ports = servers.map(s => (s.address() as { port: number }).port)
  await Promise.all(servers.map(async s => { await new Promise(resolve => s.close(resolve)) }))
  return ports
}

const RINGS_PY = `
import sys
from swift.common.ring import RingBuilder
d = sys.argv[1]
for spec in sys.argv[2:]:
    name, port = spec.split(':')
    b = RingBuilder(6, 1, 1)
    b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port), 'device': 'd1', 'weight': 100, 'meta': ''})
    b.rebalance()
    b.get_ring().save('%s/%s.ring.gz' % (d, name))
`

function serverConf (dir: string, kind: string, port: number, logPort: number, user: string): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
user = ${user}
swift_dir = ${dir}
devices = ${join(dir, 'srv')}
mount_check = false
log_name = ${kind}
log_udp_host = 127.0.0.1
log_udp_port = ${logPort}
log_level = WARNING

[pipeline:main]
pipeline = ${kind}-server

[app:${kind}-server]
use = egg:swift#${kind}
`
}

function proxyConf (dir: string, port: number, memcachePort: number, logPort: number, user: string): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
user = ${user}
swift_dir = ${dir}
log_name = proxy
log_udp_host = 127.0.0.1
log_udp_port = ${logPort}
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
# A one-replica cluster has nowhere else to go: never shun a server for its start-up errors
# (by default ten refused connections while it starts shut it out for a minute).
error_suppression_interval = 0

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = ${SWIFT_CREDENTIALS.secretAccessKey} .admin

[filter:s3api]
use = egg:swift#s3api

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${memcachePort}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
`
}

/**
 * Starts a private Swift with S3 on 127.0.0.1 and waits (at most `timeoutMs`, default 60 s) until an
 * S3 PUT and GET work. Throws, after removing everything it started, when that does not happen.
 */
export async function startSwift (options: { timeoutMs?: number, bucket?: string } = {}): Promise<Swift> {
  const why = swiftMissing()
  if (why !== undefined) throw new Error(why)
  const t0 = Date.now()
  const deadline = t0 + (options.timeoutMs ?? 60_000)
  const dir = await mkdtemp(join(process.env.IMGSWARM_SWIFT_TMP ?? tmpdir(), 'imgswarm-swift-'))
  const children: ChildProcess[] = []
  let watchdog: ChildProcess | undefined
  const logFile = join(dir, 'swift.log')
  const logs = createSocket('udp4')

  let stopped = false
  const killAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) killTree(c.pid, 'SIGKILL')
  }
  const onExit = (): void => {
    killAll()
    try { rmSync(dir, { recursive: true, force: true }) } catch {}
  }
  process.once('exit', onExit)

  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    process.off('exit', onExit)
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) killTree(c.pid, 'SIGTERM')
    const exited = Promise.all(children.map(async c => { await waitExit(c, 3000) }))
    await exited
    killAll()
    await Promise.all(children.map(async c => { await waitExit(c, 2000) }))
    if (watchdog?.pid !== undefined && watchdog.exitCode === null) watchdog.kill('SIGKILL')
    await new Promise<void>(resolve => logs.close(() => resolve()))
    await rm(dir, { recursive: true, force: true })
  }

  try {
    const [proxyPort, accountPort, containerPort, objectPort, memcachePort] = await freePorts(5)
    await new Promise<void>((resolve, reject) => {
      logs.once('error', reject)
      logs.bind(0, '127.0.0.1', () => resolve())
    })
    logs.on('message', msg => { appendFile(logFile, msg.toString('utf8').replace(/\0$/, '') + '\n').catch(() => {}) })
    const logPort = logs.address().port
    const user = userInfo().username
    await mkdir(join(dir, 'srv', 'd1'), { recursive: true })
    await writeFile(join(dir, 'account.conf'), serverConf(dir, 'account', accountPort, logPort, user))
    await writeFile(join(dir, 'container.conf'), serverConf(dir, 'container', containerPort, logPort, user))
    await writeFile(join(dir, 'object.conf'), serverConf(dir, 'object', objectPort, logPort, user))
    await writeFile(join(dir, 'proxy.conf'), proxyConf(dir, proxyPort, memcachePort, logPort, user))

    const env = {
      ...process.env,
      // eventlet's green DNS resolver costs ~0.6 s of start-up per server and is not needed on 127.0.0.1.
      EVENTLET_NO_GREENDNS: 'yes',
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHONPATH: ''
    }
    const rings = spawnSync(PYTHON, ['-c', RINGS_PY, dir, `account:${accountPort}`, `container:${containerPort}`, `object:${objectPort}`], { env, encoding: 'utf8', timeout: 30_000 })
    if (rings.status !== 0) throw new Error(`building Swift rings failed: ${rings.stderr ?? rings.error?.message ?? ''}`)

    const start = (name: string, cmd: string, args: string[]): void => {
      const child = spawn(cmd, args, { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      const out = join(dir, `${name}.out`)
      child.stdout?.on('data', d => { appendFile(out, d).catch(() => {}) })
      child.stderr?.on('data', d => { appendFile(out, d).catch(() => {}) })
      child.on('error', () => {})
      children.push(child)
    }
    // memcached refuses to run as root unless told which user to be; -P puts our directory in its command line.
    start('memcached', 'memcached', [...(process.getuid?.() === 0 ? ['-u', 'root'] : []), '-l', '127.0.0.1', '-p', String(memcachePort), '-U', '0', '-m', '16', '-P', join(dir, 'memcached.pid')])
    for (const kind of ['account', 'container', 'object', 'proxy']) start(kind, `swift-${kind}-server`, [join(dir, `${kind}.conf`)])
    watchdog = startWatchdog(dir, children)

    const endpoint = `http://127.0.0.1:${proxyPort}`
    const bucket = options.bucket ?? 'imgswarm-test'
    const dead = (): string | undefined => {
      const c = children.find(c => c.exitCode !== null || c.signalCode !== null)
      return c === undefined ? undefined : `${String(c.spawnfile)} exited (${c.exitCode ?? c.signalCode})`
    }
    // Probe S3 only once every server listens: the proxy's first requests then find them all.
    await Promise.all([memcachePort, accountPort, containerPort, objectPort, proxyPort].map(async port => { await waitForPort(port, deadline, dead) }))
    await waitUntilS3Works(endpoint, bucket, deadline, dead)
    return { endpoint, port: proxyPort, region: 'us-east-1', credentials: SWIFT_CREDENTIALS, bucket, startupMs: Date.now() - t0, dir, stop }
  } catch (err) {
    const diagnostics = await tails(dir)
    await stop()
    throw new Error(`Swift did not start: ${(err as Error).message}\n${diagnostics}`, { cause: err })
  }
}

/** Resolves once `port` on 127.0.0.1 accepts a TCP connection. */
async function waitForPort (port: number, deadline: number, dead: () => string | undefined): Promise<void> {
  for (;;) {
    const why = dead()
    if (why !== undefined) throw new Error(why)
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} before the deadline`)
    const ok = await new Promise<boolean>(resolve => {
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => { s.destroy(); resolve(false) })
    })
    if (ok) return
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function waitUntilS3Works (endpoint: string, bucket: string, deadline: number, dead: () => string | undefined): Promise<void> {
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: SWIFT_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 2000, socketTimeout: 5000 }
  })
  let last: unknown
  try {
    for (let bucketMade = false; ;) {
      const why = dead()
      if (why !== undefined) throw new Error(why)
      if (Date.now() > deadline) throw new Error(`no working S3 PUT/GET before the deadline; last error: ${String((last as Error)?.message ?? last)}`)
      try {
        if (!bucketMade) {
          await client.send(new CreateBucketCommand({ Bucket: bucket })).catch(err => {
            if ((err as Error).name !== 'BucketAlreadyOwnedByYou' && (err as Error).name !== 'BucketAlreadyExists') throw err
          })
          bucketMade = true
        }
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'probe', Body: 'probe' }))
        const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'probe' }))
        if (await got.Body?.transformToString() === 'probe') return
      } catch (err) {
        // Connection refused until the proxy listens; 503 for a moment after, until every server answers.
        last = err
      }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  } finally {
    client.destroy()
  }
}

/** The last lines of every log, for a start-up failure's message. */
async function tails (dir: string): Promise<string> {
  const parts: string[] = []
  for (const name of ['swift.log', 'memcached.out', 'account.out', 'container.out', 'object.out', 'proxy.out']) {
    const text = await readFile(join(dir, name), 'utf8').catch(() => '')
    if (text.trim() !== '') parts.push(`--- ${name}\n${text.trim().split('\n').slice(-15).join('\n')}`)
  }
  return parts.join('\n')
}

/** Signals `pid` and every process below it (found through /proc), children first. */
function killTree (pid: number, signal: NodeJS.Signals): void {
  for (const p of [...descendants(pid).reverse(), pid]) {
    try { process.kill(p, signal) } catch {}
  }
}

function descendants (pid: number): number[] {
  const byParent = new Map<number, number[]>()
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
        byParent.set(ppid, [...byParent.get(ppid) ?? [], Number(entry)])
      } catch {}
    }
  } catch {}
  const out: number[] = []
  for (let queue = [pid]; queue.length > 0;) {
    const next = byParent.get(queue.shift() as number) ?? []
    out.push(...next)
    queue.push(...next)
  }
  return out
}

async function waitExit (child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>(resolve => {
    const timer = setTimeout(resolve, ms)
    child.once('exit', () => { clearTimeout(timer); resolve() })
  })
}

/**
 * A detached shell that outlives us only to clean up: once this process is gone, it kills the
 * servers (those whose command line still names our directory, so a recycled PID is left alone)
 * and removes the directory. `stop()` kills it first on the normal path.
 */
function startWatchdog (dir: string, children: ChildProcess[]): ChildProcess {
  const pids = children.map(c => c.pid).filter(p => p !== undefined).join(' ')
  const script = `
while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done
for sig in TERM KILL; do
  for p in ${pids}; do grep -qs "$1" /proc/$p/cmdline && kill -$sig $p 2>/dev/null; done
  sleep 2
done
rm -rf "$1"
`
  const child = spawn('/bin/sh', ['-c', script, 'imgswarm-swift-watchdog', dir], { detached: true, stdio: 'ignore' })
  child.unref()
  return child
}
