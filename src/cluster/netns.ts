import { execFile } from 'node:child_process'
import { ClusterError } from '../errors.js'
import { tbfBurstBytes } from './tc-units.js'

/**
 * Network namespaces for a test cluster: one namespace per host, each with one veth pair whose other
 * end is a port of a bridge in the host's namespace. The bridge has no address, so nothing is routed
 * between the namespaces and the rest of the machine; the namespaces have no default route. Every
 * command is run with execFile (no shell), with a time limit.
 */

/** How long one `ip` or `tc` command may take. */
const COMMAND_TIMEOUT_MS = 15_000

/** The prefix of the addresses on a cluster's bridge: 198.18.0.0/15 is set aside for benchmarks (RFC 2544). */
export const NETNS_PREFIX_LENGTH = 15

/** Runs `ip` or `tc`; rejects with the command and its stderr. */
export async function run (cmd: 'ip' | 'tc', args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err == null) { resolve(stdout); return }
      const reason = stderr.trim().split('\n').filter(l => l !== '').join('; ') || (err as Error).message
      const e = new ClusterError(`${cmd} ${args.join(' ')}: ${reason}`, { cause: err })
      Object.assign(e, { stderr })
      reject(e)
    })
  })
}

/** Whether this process can make network namespaces (root, `ip` installed, the kernel allows it). */
export async function canMakeNamespaces (): Promise<{ ok: true } | { ok: false, reason: string }> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root' }
  try {
    await run('ip', ['-V'])
    await run('tc', ['-V'])
  } catch (err) {
    return { ok: false, reason: `ip and tc (Debian: apt-get install iproute2) are needed: ${(err as Error).message}` }
  }
  return { ok: true }
}

export async function listNamespaces (): Promise<string[]> {
  const out = await run('ip', ['netns', 'list'])
  return out.split('\n').map(l => l.trim().split(/\s+/)[0]).filter(n => n !== '' && n !== undefined)
}

export async function linkExists (name: string): Promise<boolean> {
  return await run('ip', ['link', 'show', 'dev', name]).then(() => true, () => false)
}

export async function createBridge (name: string): Promise<void> {
  await run('ip', ['link', 'add', 'name', name, 'type', 'bridge'])
  await run('ip', ['link', 'set', 'dev', name, 'up'])
}

export interface Shaping {
  /** tc rate, e.g. `100mbit`, with its value in bits per second. */
  rate?: { text: string, bitsPerSecond: number }
  /** tc time, e.g. `5ms`. */
  delay?: string
}

/**
 * Makes namespace `netns` a host on `bridge`: a veth pair whose host end `hostLink` joins the bridge
 * and whose other end is `eth0` inside the namespace with `address`/15, `lo` up, and the shaping on
 * both ends (egress of each end: what the host sends and what it receives).
 */
export async function addHost (options: { netns: string, hostLink: string, bridge: string, address: string, shaping: Shaping }): Promise<void> {
  const { netns, hostLink, bridge, address, shaping } = options
  await run('ip', ['netns', 'add', netns])
  await run('ip', ['link', 'add', 'name', hostLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns])
  await run('ip', ['link', 'set', 'dev', hostLink, 'master', bridge])
  await run('ip', ['link', 'set', 'dev', hostLink, 'up'])
  await run('ip', ['-n', netns, 'link', 'set', 'dev', 'lo', 'up'])
  await run('ip', ['-n', netns, 'addr', 'add', `${address}/${NETNS_PREFIX_LENGTH}`, 'dev', 'eth0'])
  await run('ip', ['-n', netns, 'link', 'set', 'dev', 'eth0', 'up'])
  await shape(hostLink, undefined, shaping)
  await shape('eth0', netns, shaping)
}

/**
 * Limits what leaves `dev`: `tbf` for the rate; for a delay, `netem` at the root with the `tbf` as its
 * child (netem's own documented way to combine the two). netem is a kernel module that some kernels
 * (e.g. minimal VM kernels) lack; the error then says so.
 */
async function shape (dev: string, netns: string | undefined, shaping: Shaping): Promise<void> {
  const tc = async (args: string[]): Promise<void> => { await run('tc', [...(netns != null ? ['-n', netns] : []), ...args]) }
  const tbf = shaping.rate == null
    ? undefined
    : ['tbf', 'rate', shaping.rate.text, 'burst', String(tbfBurstBytes(shaping.rate.bitsPerSecond)), 'latency', '50ms']
  if (shaping.delay != null) {
    try {
      await tc(['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'netem', 'delay', shaping.delay, 'limit', '100000'])
    } catch (err) {
      if (/qdisc kind is unknown/i.test(String((err as { stderr?: string }).stderr))) {
        throw new ClusterError(`--delay needs the kernel's netem qdisc (sch_netem), which this kernel does not have; --rate works without it`, { cause: err })
      }
      throw err
    }
    if (tbf != null) await tc(['qdisc', 'add', 'dev', dev, 'parent', '1:1', 'handle', '10:', ...tbf])
  } else if (tbf != null) {
    await tc(['qdisc', 'add', 'dev', dev, 'root', ...tbf])
  }
}

/** Deletes a link in the host's namespace (a veth end takes its peer with it); absent is fine. */
export async function deleteLink (name: string): Promise<void> {
  if (!await linkExists(name)) return
  await run('ip', ['link', 'del', 'dev', name]).catch(async err => { if (await linkExists(name)) throw err })
}

/** Deletes a namespace; absent is fine. Processes inside must be stopped first (see {@link namespacePids}). */
export async function deleteNamespace (name: string): Promise<void> {
  if (!(await listNamespaces()).includes(name)) return
  await run('ip', ['netns', 'del', name]).catch(async err => { if ((await listNamespaces()).includes(name)) throw err })
}

/** The pids of every process in a namespace (none when it does not exist). */
export async function namespacePids (name: string): Promise<number[]> {
  if (!(await listNamespaces()).includes(name)) return []
  const out = await run('ip', ['netns', 'pids', name]).catch(() => '')
  return out.split('\n').filter(l => /^\d+$/.test(l.trim())).map(Number)
}
