import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readdir, readlink, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type tap from 'tap'
import { BIN, runCli, tempDir, type CliResult } from './cli.js'
import { seededBytes } from './data.js'

/** A tap test, as the callback of `t.test` receives it. */
export type T = Parameters<Parameters<typeof tap.test>[0]>[0]

export type Env = NodeJS.ProcessEnv

/** sha256 of a file, streamed. */
export async function fileSha256 (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer)
  return `sha256:${hash.digest('hex')}`
}

/** `imgswarm import PATH` that must succeed; returns the ref it printed. */
export async function importOk (t: T, env: Env, path: string, extra: string[] = []): Promise<string> {
  const r = await runCli(['import', path, ...extra], { env })
  t.equal(r.code, 0, `import ${path} succeeds: ${r.stderr}`)
  return r.stdout.trim()
}

/** A temp dir with a data dir (`data`) holding one imported image of `size` seeded bytes, and `scratch` for outputs. */
export async function storeWithImage (t: T, seed: string, size: number, extra: string[] = []): Promise<{ dir: string, data: string, scratch: string, env: Env, ref: string }> {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const env = { IMGSWARM_DATA: data }
  await writeFile(join(dir, 'img'), seededBytes(size, seed))
  const ref = await importOk(t, env, join(dir, 'img'), extra)
  return { dir, data, scratch: join(dir, 'scratch'), env, ref }
}

/**
 * What a user checks after a failed command: a non-zero exit (not a crash by signal), exactly one line
 * on stderr that names the problem, and nothing on stdout.
 */
export function assertCleanFailure (t: T, r: CliResult, mentions: Array<string | RegExp>, options: { code?: number, stdout?: boolean } = {}): void {
  t.equal(r.signal, null, 'not killed by a signal')
  t.not(r.code, 0, 'exit code is not 0')
  if (options.code !== undefined) t.equal(r.code, options.code, `exit code is ${options.code}`)
  t.match(r.stderr, /^imgswarm[^\n]*\n$/, `exactly one line on stderr: ${JSON.stringify(r.stderr)}`)
  for (const m of mentions) t.match(r.stderr, m, `stderr names the problem (${String(m)})`)
  if (options.stdout !== true) t.equal(r.stdout, '', 'nothing on stdout')
}

/** An image listed `available` by `ls --json` that exports byte-identical to what was imported. */
export async function assertIntact (t: T, env: Env, ref: string, scratch: string): Promise<void> {
  const ls = await runCli(['ls', '--json'], { env })
  t.equal(ls.code, 0, `ls works: ${ls.stderr}`)
  let images: Array<{ ref: string, state: string }> = []
  try { images = JSON.parse(ls.stdout) } catch {}
  const rec = images.find(i => i.ref === ref)
  t.equal(rec?.state, 'available', `${ref.slice(0, 19)} is still listed available`)
  await mkdir(scratch, { recursive: true })
  const out = join(scratch, `check-${Date.now()}-${Math.random().toString(16).slice(2)}`)
  const exp = await runCli(['export', ref, '-o', out], { env })
  t.equal(exp.code, 0, `export still works: ${exp.stderr}`)
  if (exp.code === 0) t.equal(await fileSha256(out), ref, 'exported bytes hash to the ref')
  await rm(out, { force: true })
}

/** The refs `ls --json` lists, with their states. */
export async function listStates (env: Env): Promise<Map<string, string>> {
  const ls = await runCli(['ls', '--json'], { env })
  if (ls.code !== 0) throw new Error(`ls failed: ${ls.stderr}`)
  return new Map((JSON.parse(ls.stdout) as Array<{ ref: string, state: string }>).map(i => [i.ref, i.state]))
}

/** Polls `cond` every `intervalMs` until it holds; false after `timeoutMs` (bounded in time and count). */
export async function waitFor (cond: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 20): Promise<boolean> {
  const tries = Math.ceil(timeoutMs / intervalMs)
  for (let i = 0; i < tries; i++) {
    if (await cond()) return true
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
  return await cond()
}

/** Whether process `pid` has `path` open (from /proc/PID/fd): LevelDB keeps its LOCK file open while it holds it. */
export async function hasOpen (pid: number, path: string): Promise<boolean> {
  let fds: string[]
  try { fds = await readdir(`/proc/${pid}/fd`) } catch { return false }
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
    if (target === path) return true
  }
  return false
}

/** Starts `bin/imgswarm ARGS` with a pipe on stdin that the test controls; killed with SIGKILL in teardown. */
export function startCli (t: T, args: string[], env: Env): { child: ChildProcess, done: Promise<CliResult> } {
  const child = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', d => { stdout += d })
  child.stderr!.setEncoding('utf8').on('data', d => { stderr += d })
  child.stdin!.on('error', () => {})
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await done.catch(() => {})
  })
  return { child, done }
}

/** Free bytes under `path` for an unprivileged writer. */
export async function freeBytes (path: string): Promise<number> {
  const s = await statfs(path)
  return s.bavail * s.bsize
}

/** Why a tmpfs cannot be mounted here (not root, no permission, no tmpfs), or undefined when it can. */
export async function tmpfsSkipReason (): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs'
  const probe = await mkdtemp(join(tmpdir(), 'imgswarm-mount-probe-'))
  try {
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { encoding: 'utf8', timeout: 10_000 })
    if (r.error != null || r.status !== 0) return `cannot mount a tmpfs here: ${r.error?.message ?? r.stderr.trim()}`
    spawnSync('umount', [probe], { timeout: 10_000 })
    return undefined
  } finally {
    await rm(probe, { recursive: true, force: true })
  }
}

/**
 * Mounts a new tmpfs of `size` (e.g. '48m') on a fresh directory and returns it; teardown unmounts
 * it and removes the directory, whatever order other teardowns run in. Call only when
 * {@link tmpfsSkipReason} found nothing in the way.
 */
export async function mountTmpfs (t: T, size: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-tmpfs-'))
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8', timeout: 10_000 })
  if (r.error != null || r.status !== 0) {
    await rm(dir, { recursive: true, force: true })
    throw new Error(`mount -t tmpfs failed: ${r.error?.message ?? r.stderr.trim()}`)
  }
  t.teardown(async () => {
    const u = spawnSync('umount', [dir], { encoding: 'utf8', timeout: 10_000 })
    if (u.status !== 0) spawnSync('umount', ['-l', dir], { timeout: 10_000 })
    await rm(dir, { recursive: true, force: true })
  })
  return dir
}

/** Runs `bin/imgswarm ARGS` as an unprivileged user (uid/gid 65534) with setpriv. */
export async function runCliAs (uid: number, args: string[], env: Env, timeoutMs = 60_000): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    // A clean environment (`env -i`): tap adds hooks to every child it spawns that write coverage and
    // process info into root's directories.
    const vars = Object.entries({ PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, HOME: '/nonexistent' }).map(([k, v]) => `${k}=${v ?? ''}`)
    const child = spawn('env', ['-i', ...vars, 'setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', d => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', d => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Files of a data dir's databases (the catalog and the chunk log) whose names end with `ext`, largest first. */
export async function dbFiles (dataDir: string, ext: string): Promise<Array<{ path: string, size: number }>> {
  const files: Array<{ path: string, size: number }> = []
  for (const dir of [join(dataDir, 'db'), join(dataDir, 'chunks')]) {
    const names = (await readdir(dir).catch(() => [])).filter(n => n.endsWith(ext))
    files.push(...await Promise.all(names.map(async n => ({ path: join(dir, n), size: (await stat(join(dir, n))).size }))))
  }
  return files.sort((a, b) => b.size - a.size)
}
