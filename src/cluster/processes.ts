import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'

/** How long a process gets to stop after SIGTERM before it is killed. */
const TERM_GRACE_MS = 5_000

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * The start time of a process (clock ticks after boot, field 22 of /proc/PID/stat), or undefined
 * when it is gone or a zombie. A zombie has already let go of its namespaces and files, so it
 * counts as gone.
 */
export async function processStartTime (pid: number): Promise<string | undefined> {
  let stat: string
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold spaces: read after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined
  return fields[19]
}

/** Whether `pid` is still the process that was started at `startTime` (any process when that is unknown). */
export async function isRunning (pid: number, startTime?: string): Promise<boolean> {
  const now = await processStartTime(pid)
  return now !== undefined && (startTime === undefined || now === startTime)
}

/**
 * Starts `argv` detached from this process (own session, stdin closed, stdout and stderr appended to
 * `log`), so that it outlives the command that started it. Resolves once the process exists.
 */
export async function spawnDetached (argv: string[], options: { log: string, cwd: string, env: NodeJS.ProcessEnv }): Promise<{ pid: number, startTime?: string }> {
  const fd = openSync(options.log, 'a')
  try {
    const child = spawn(argv[0], argv.slice(1), { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', fd, fd] })
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('spawn', () => { resolve(child.pid!) })
    })
    child.unref()
    return { pid, startTime: await processStartTime(pid) }
  } finally {
    closeSync(fd)
  }
}

/**
 * Stops a process: SIGTERM, then SIGKILL after {@link TERM_GRACE_MS}, and waits (bounded) until it is
 * gone. A pid that now belongs to another process (a different start time) is left alone.
 * Resolves true when the process is gone.
 */
export async function stopProcess (pid: number, startTime?: string, options: { graceMs?: number, signal?: NodeJS.Signals } = {}): Promise<boolean> {
  if (!await isRunning(pid, startTime)) return true
  const send = (sig: NodeJS.Signals): void => {
    try { process.kill(pid, sig) } catch {}
  }
  send(options.signal ?? 'SIGTERM')
  const termUntil = Date.now() + (options.graceMs ?? TERM_GRACE_MS)
  while (Date.now() < termUntil) {
    if (!await isRunning(pid, startTime)) return true
    await sleep(50)
  }
  send('SIGKILL')
  const killUntil = Date.now() + 5_000
  while (Date.now() < killUntil) {
    if (!await isRunning(pid, startTime)) return true
    await sleep(50)
  }
  return false
}

/**
 * Processes whose command line marks them as part of the cluster in `dir`: a daemon run with
 * `--data DIR/…`, or an origin server run with `--cluster DIR`. `down` uses this besides the pids in
 * the state file, for a process that `up` started but could not record (it crashed in between).
 */
export async function findClusterProcesses (dir: string): Promise<number[]> {
  const found: number[] = []
  const entries = await readdir('/proc').catch(() => [] as string[])
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    const args = cmdline.split('\0')
    const marked = args.some((a, i) =>
      (a === '--data' && args[i + 1]?.startsWith(`${dir}/`) === true && args.includes('daemon')) ||
      (a === '--cluster' && args[i + 1] === dir))
    if (marked) found.push(pid)
  }
  return found
}
