import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli, type CliResult } from './cli.js'

interface Teardown { teardown: (fn: () => Promise<void> | void) => void }

export interface UpInfo {
  dir: string
  origin: string | null
  nodes: Array<{ name: string, api: string, peerId: string, multiaddrs: string[] }>
}

/** `imgswarm cluster up … --dir DIR --json`; `cluster down` runs at teardown whatever happens. */
export async function clusterUp (t: Teardown, dir: string, args: string[]): Promise<{ result: CliResult, info?: UpInfo }> {
  t.teardown(async () => { await runCli(['cluster', 'down', '--dir', dir], { timeoutMs: 60_000 }) })
  const result = await runCli(['cluster', 'up', '--dir', dir, '--json', ...args], { timeoutMs: 120_000 })
  return { result, info: result.code === 0 ? JSON.parse(result.stdout) as UpInfo : undefined }
}

export async function clusterStatus (dir: string): Promise<any> {
  const res = await runCli(['cluster', 'status', '--dir', dir, '--json'], { timeoutMs: 30_000 })
  if (res.code !== 0) throw new Error(`cluster status failed: ${res.stderr}`)
  return JSON.parse(res.stdout)
}

/** The cluster's id (in its namespace and link names), read from its state file. */
export async function clusterId (dir: string): Promise<string> {
  return (JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as { id: string }).id
}

/** Whether a process is still alive (a zombie is not). */
export function alive (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

/** What is left of a cluster: live processes whose command line names DIR, namespaces and links named by its id, the dir. */
export async function leftovers (dir: string, id?: string): Promise<{ processes: string[], namespaces: string[], links: string[], dirExists: boolean }> {
  const pgrep = spawnSync('pgrep', ['-af', dir], { encoding: 'utf8' })
  const processes = pgrep.stdout.split('\n').filter(l => l.trim() !== '' && alive(Number(l.split(' ')[0])))
  let namespaces: string[] = []
  let links: string[] = []
  if (id != null) {
    namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter(l => l.includes(`imgswarm-${id}-`))
    links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.split('\n').filter(l => l.includes(`isw${id}`))
  }
  return { processes, namespaces, links, dirExists: await stat(dir).then(() => true, () => false) }
}

/** Why network-namespace tests cannot run here, or undefined when they can (tried with a real namespace). */
export function netnsSkipReason (): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: network namespaces need root'
  const name = `imgswarm-probe-${process.pid}`
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' })
  if (add.error != null) return `ip not found (apt-get install iproute2): ${add.error.message}`
  if (add.status !== 0) return `ip netns add failed: ${add.stderr.trim()}`
  spawnSync('ip', ['netns', 'del', name])
  const veth = spawnSync('ip', ['link', 'add', `iswprobe${process.pid % 1000}`, 'type', 'veth', 'peer', 'name', `iswprobq${process.pid % 1000}`], { encoding: 'utf8' })
  if (veth.status !== 0) return `veth pairs cannot be made: ${veth.stderr.trim()}`
  spawnSync('ip', ['link', 'del', `iswprobe${process.pid % 1000}`])
  return undefined
}
