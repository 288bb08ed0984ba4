import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseApiAddress } from '../api/address.js'
import { ApiClient } from '../api/client.js'
import { ClusterError, ImgswarmError, UsageError } from '../errors.js'
import type { LogLevel } from '../util/log.js'
import { StateFile, newClusterId, readState, type ClusterNode, type ClusterResource, type ClusterState } from './cluster-state.js'
import { pickPorts } from './loopback.js'
import { addHost, canMakeNamespaces, createBridge, deleteLink, deleteNamespace, linkExists, listNamespaces, namespacePids, type Shaping } from './netns.js'
import { findClusterProcesses, isRunning, processStartTime, spawnDetached, stopProcess } from './processes.js'
import { parseDelay, parseRate } from './tc-units.js'
import { withDeadline } from '../util/deadline.js'

const BIN = fileURLToPath(new URL('../../../bin/imgswarm', import.meta.url))
const ORIGIN_SERVER = fileURLToPath(new URL('./origin-server.js', import.meta.url))

/** Most nodes one cluster may have (addresses, interface names and sanity). */
export const MAX_NODES = 200
/** The peer port of every node inside its namespace, and the origin server's. */
const NETNS_PEER_PORT = 4001
const NETNS_ORIGIN_PORT = 8080
/** A unix socket path must fit in `sun_path` (108 bytes on Linux, with its NUL). */
const MAX_SOCKET_PATH = 107

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export interface ClusterUpOptions {
  /** How many nodes (1 to {@link MAX_NODES}). */
  nodes: number
  /** One network namespace per node on a bridge, with addresses from 198.18.0.0/15 (needs root). Default false: 127.0.0.1 ports. */
  netns?: boolean
  /** `tc` rate limit on every host's link, both directions, e.g. `100mbit` (needs `netns`). */
  rate?: string
  /** `tc netem` delay added in each direction of every host's link, e.g. `5ms` (needs `netns` and a kernel with netem). */
  delay?: string
  /** An origin URL passed to every node. */
  origin?: string
  /** A directory in the layout `publish --origin file://DIR` writes, served to the nodes by an HTTP origin with Range support. */
  originDir?: string
  /** Where the cluster lives. Default {@link defaultClusterDir}. */
  dir?: string
  /** How long to wait for every node to be ready and joined. Default 30 s + 2 s per node. */
  timeoutMs?: number
  /** The daemons' log level. Default `info`. */
  logLevel?: LogLevel
  /** More `imgswarm daemon` flags for every node (`--max-size 1GiB`, `--replica-interval 5`). */
  daemonFlags?: string[]
  signal?: AbortSignal
  /** The environment the daemons start from (`IMGSWARM_*` variables other than `IMGSWARM_DEBUG` are dropped). Default `process.env`. */
  env?: NodeJS.ProcessEnv
  /** Called with a line of progress ("starting 5 nodes"). */
  onProgress?: (line: string) => void
}

/** What `cluster up --json` prints. Each `api` works as `IMGSWARM_API` from the shell that ran `up`. */
export interface ClusterInfo {
  dir: string
  origin: string | null
  nodes: Array<{ name: string, api: string, peerId: string, multiaddrs: string[] }>
}

export type NodeState = 'ready' | 'starting' | 'unreachable' | 'down'

export interface ClusterStatus extends ClusterInfo {
  mode: 'loopback' | 'netns'
  rate: string | null
  delay: string | null
  /** False while `up` is still starting the cluster (or when it crashed before the end). */
  complete: boolean
  originServer: { pid: number | null, running: boolean } | null
  nodes: Array<ClusterInfo['nodes'][number] & { pid: number | null, netns: string | null, state: NodeState, peers: number | null, images: number | null }>
}

export interface ClusterDownResult {
  dir: string
  /** False when there was no cluster in `dir`. */
  found: boolean
  removed: { processes: number, namespaces: number, links: number, files: number }
}

/** `$XDG_RUNTIME_DIR/imgswarm-cluster`, else `/tmp/imgswarm-cluster-<uid>`. */
export function defaultClusterDir (env: NodeJS.ProcessEnv = process.env): string {
  if (env.IMGSWARM_CLUSTER_DIR != null && env.IMGSWARM_CLUSTER_DIR !== '') return resolve(env.IMGSWARM_CLUSTER_DIR)
  if (env.XDG_RUNTIME_DIR != null && env.XDG_RUNTIME_DIR !== '') return join(env.XDG_RUNTIME_DIR, 'imgswarm-cluster')
  return `/tmp/imgswarm-cluster-${process.getuid?.() ?? 'user'}`
}

const clusterError = (message: string, cause?: unknown): ImgswarmError => new ClusterError(message, { cause })

/** Names and addresses of one cluster's namespaces and links (interface names stay within 15 characters). */
function names (id: string): { bridge: string, nodeNs: (k: number) => string, nodeLink: (k: number) => string, nodeAddress: (k: number) => string, originNs: string, originLink: string, originAddress: string } {
  return {
    bridge: `isw${id}br`,
    nodeNs: k => `imgswarm-${id}-node${k}`,
    nodeLink: k => `isw${id}h${k}`,
    nodeAddress: k => `198.18.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`,
    originNs: `imgswarm-${id}-origin`,
    originLink: `isw${id}ho`,
    originAddress: '198.18.0.2'
  }
}

function daemonEnv (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('IMGSWARM_') || k === 'IMGSWARM_DEBUG') out[k] = v
  return out
}

/** The last non-empty line of a log file, shortened: what a node said before it died. */
async function lastLogLine (path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '')
  const line = text.trimEnd().split('\n').at(-1) ?? ''
  let said = line
  try {
    const entry = JSON.parse(line) as { msg?: string, err?: { message?: string } | string }
    const err = typeof entry.err === 'string' ? entry.err : entry.err?.message
    if (entry.msg != null) said = err != null ? `${entry.msg}: ${err}` : entry.msg
  } catch {}
  return said.length > 300 ? `${said.slice(0, 300)}…` : said
}

/** GET on a node's API with a time limit: the status and parsed JSON body, or undefined when unreachable. */
async function apiGet<T> (api: string, path: string, timeoutMs = 3_000): Promise<{ status: number, body: T } | undefined> {
  const client = new ApiClient(parseApiAddress(api))
  try {
    return await withDeadline(timeoutMs, undefined, async signal => {
      const res = await client.send('GET', path, { signal })
      let text = ''
      for await (const piece of res) text += String(piece)
      return { status: res.statusCode ?? 0, body: (text === '' ? undefined : JSON.parse(text)) as T }
    })
  } catch {
    return undefined
  }
}

/**
 * Starts a cluster of `nodes` daemons and returns once every node's health check answers 200 and
 * every node has joined the swarm (see {@link peersToJoin}: a full mesh up to 8 nodes). Everything it makes is recorded in `DIR/cluster.json`
 * before it is made; on any failure (or abort) it removes all of it again before throwing.
 */
export async function clusterUp (options: ClusterUpOptions): Promise<ClusterInfo> {
  const n = options.nodes
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES) throw new UsageError(`--nodes must be a whole number from 1 to ${MAX_NODES}, not ${String(n)}`)
  const netns = options.netns === true
  if (!netns && (options.rate != null || options.delay != null)) throw new UsageError('--rate and --delay shape the links between namespaces: they need --netns')
  if (options.origin != null && options.originDir != null) throw new UsageError('give --origin URL or --origin-dir DIR, not both')
  const shaping: Shaping = {}
  if (options.rate != null) shaping.rate = { text: options.rate, bitsPerSecond: parseRate(options.rate) }
  if (options.delay != null) { parseDelay(options.delay); shaping.delay = options.delay }
  const dir = resolve(options.dir ?? defaultClusterDir(options.env))
  const longest = join(dir, `node${n - 1}`, 'api.sock')
  if (longest.length > MAX_SOCKET_PATH) throw new UsageError(`cluster dir ${dir} is too long: the API socket ${longest} must fit in ${MAX_SOCKET_PATH} bytes; choose a shorter --dir`)
  if (netns) {
    const can = await canMakeNamespaces()
    if (!can.ok) throw clusterError(`--netns: ${can.reason}`)
  }
  const originDir = options.originDir != null ? resolve(options.originDir) : undefined
  if (originDir != null && !(await stat(originDir).then(s => s.isDirectory(), () => false))) throw new UsageError(`--origin-dir ${originDir} is not a directory`)

  const existing = await readdir(dir).catch(err => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw clusterError(`cannot use ${dir} as the cluster dir: ${(err as Error).message}`, err)
  })
  if (existing?.includes('cluster.json') === true) throw clusterError(`${dir} already holds a cluster; run \`imgswarm cluster down --dir ${dir}\` first`)
  if (existing != null && existing.length > 0) throw clusterError(`cluster dir ${dir} is not empty; choose another --dir, or empty it`)
  await mkdir(dir, { recursive: true })
  const state: ClusterState = {
    format: 1,
    id: newClusterId(),
    dir,
    mode: netns ? 'netns' : 'loopback',
    createdDir: existing == null,
    up: { pid: process.pid, startTime: await processStartTime(process.pid) },
    ready: false,
    origin: options.origin ?? null,
    rate: options.rate ?? null,
    delay: options.delay ?? null,
    nodes: [],
    resources: []
  }
  let file: StateFile
  try {
    file = await StateFile.create(state)
  } catch (err) {
    if (state.createdDir) await rmdir(dir).catch(() => {})
    throw err
  }
  try {
    await build(file, options, shaping, originDir)
    return info(state)
  } catch (err) {
    const left = await teardown(file).catch((e: unknown) => [`teardown failed: ${(e as Error).message}`])
    const reason = options.signal?.aborted === true ? 'interrupted' : (err as Error).message
    const tail = left.length > 0 ? ` (and could not remove: ${left.join('; ')}; run \`imgswarm cluster down --dir ${dir}\`)` : ' (everything it made was removed)'
    throw clusterError(`cluster up failed: ${reason}${tail}`, err)
  }
}

function info (state: ClusterState): ClusterInfo {
  return { dir: state.dir, origin: state.origin, nodes: state.nodes.map(n => ({ name: n.name, api: n.api, peerId: n.peerId, multiaddrs: n.multiaddrs })) }
}

async function build (file: StateFile, options: ClusterUpOptions, shaping: Shaping, originDir: string | undefined): Promise<void> {
  const state = file.state
  const { dir, id } = state
  const n = options.nodes
  const signal = options.signal
  const progress = options.onProgress ?? (() => {})
  const net = names(id)
  const netns = state.mode === 'netns'
  const env = daemonEnv(options.env ?? process.env)

  // The nodes' data dirs and keys first: every node's peer ID is then known before any starts.
  progress(`preparing ${n} node${n === 1 ? '' : 's'} in ${dir}`)
  const ports = netns ? [] : await pickPorts(n)
  for (let k = 0; k < n; k++) {
    signal?.throwIfAborted()
    const data = join(dir, `node${k}`)
    await file.record({ kind: 'file', path: data })
    await mkdir(data)
    const { loadOrCreateIdentity } = await import('../peer/identity.js') // libp2p's crypto loads only for `up`
    const { peerId } = await loadOrCreateIdentity(data)
    const listen = netns ? `/ip4/${net.nodeAddress(k)}/tcp/${NETNS_PEER_PORT}` : `/ip4/127.0.0.1/tcp/${ports[k]}`
    state.nodes.push({ name: `node${k}`, data, api: `unix:${join(data, 'api.sock')}`, peerId: peerId.toString(), listen, multiaddrs: [], ...(netns ? { netns: net.nodeNs(k) } : {}) })
  }
  await file.save()
  // Nodes in namespaces listen beyond loopback, where a daemon refuses an open swarm: they share a key.
  const swarmKey = netns ? join(dir, 'swarm.key') : undefined
  if (swarmKey != null) {
    await file.record({ kind: 'file', path: swarmKey })
    await writeFile(swarmKey, `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`, { mode: 0o600 })
  }

  if (netns) {
    progress(`making ${n + (originDir != null ? 1 : 0)} network namespaces on bridge ${net.bridge}`)
    await file.record({ kind: 'link', name: net.bridge })
    await createBridge(net.bridge)
    const hosts = [
      ...(originDir != null ? [{ ns: net.originNs, link: net.originLink, address: net.originAddress }] : []),
      ...state.nodes.map((_node, k) => ({ ns: net.nodeNs(k), link: net.nodeLink(k), address: net.nodeAddress(k) }))
    ]
    for (const h of hosts) {
      signal?.throwIfAborted()
      await file.record({ kind: 'netns', name: h.ns })
      await file.record({ kind: 'link', name: h.link })
      await addHost({ netns: h.ns, hostLink: h.link, bridge: net.bridge, address: h.address, shaping })
    }
  }

  if (originDir != null) {
    progress(`starting the origin server for ${originDir}`)
    const ready = join(dir, 'origin.json')
    const log = join(dir, 'origin.log')
    await file.record({ kind: 'file', path: log })
    await file.record({ kind: 'file', path: ready })
    const host = netns ? net.originAddress : '127.0.0.1'
    const port = netns ? NETNS_ORIGIN_PORT : 0
    const argv = [process.execPath, ORIGIN_SERVER, '--root', originDir, '--host', host, '--port', String(port), '--ready', ready, '--cluster', dir]
    const proc = await file.record<ClusterResource & { kind: 'process' }>({ kind: 'process', name: 'origin' })
    Object.assign(proc, await spawnDetached(netns ? ['ip', 'netns', 'exec', net.originNs, ...argv] : argv, { log, cwd: dir, env }))
    await file.save()
    const until = Date.now() + 20_000
    for (;;) {
      const text = await readFile(ready, 'utf8').catch(() => undefined)
      if (text !== undefined) { state.origin = (JSON.parse(text) as { url: string }).url; break }
      if (!await isRunning(proc.pid!, proc.startTime)) throw clusterError(`the origin server exited: ${await lastLogLine(log)}`)
      if (Date.now() > until) throw clusterError('the origin server did not start listening within 20 s')
      signal?.throwIfAborted()
      await sleep(50)
    }
    await file.save()
  }

  progress(`starting ${n} daemon${n === 1 ? '' : 's'}`)
  // All start at once; of each pair that name each other, the one that starts listening last reaches
  // the other (a dial to a port nobody listens on yet fails at once).
  const procs = await Promise.all(state.nodes.map(async (node, k) => {
    signal?.throwIfAborted()
    const bootstrap = bootstrapOf(k, n).map(j => state.nodes[j]).flatMap(o => ['--bootstrap', `${o.listen}/p2p/${o.peerId}`])
    const argv = [
      process.execPath, BIN, 'daemon', '--data', node.data, '--listen', node.listen, '--api', node.api,
      ...bootstrap, ...(state.origin != null ? ['--origin', state.origin] : []), '--log-level', options.logLevel ?? 'info',
      ...(swarmKey != null ? ['--swarm-key', swarmKey] : []),
      ...options.daemonFlags ?? []
    ]
    const proc = await file.record<ClusterResource & { kind: 'process' }>({ kind: 'process', name: node.name })
    Object.assign(proc, await spawnDetached(node.netns != null ? ['ip', 'netns', 'exec', node.netns, ...argv] : argv, { log: join(node.data, 'daemon.log'), cwd: node.data, env }))
    await file.save()
    return proc
  }))

  progress(`waiting until every node is ready and has joined the swarm (${peersToJoin(n)} peer${peersToJoin(n) === 1 ? '' : 's'} each${n <= FULL_MESH_UP_TO ? ', a full mesh' : ''})`)
  await waitConnected(state.nodes, procs, options.timeoutMs ?? 30_000 + 2_000 * n, signal)
  for (const node of state.nodes) {
    const res = await apiGet<{ multiaddrs: string[] }>(node.api, '/v1/node')
    node.multiaddrs = res?.body?.multiaddrs ?? [`${node.listen}/p2p/${node.peerId}`]
  }
  state.ready = true
  state.up = null
  await file.save()
}

/** Up to this many nodes a cluster waits for a full mesh (every node connected to every other). */
export const FULL_MESH_UP_TO = 8

/**
 * The peers each node must be connected to before `up` calls it joined: all others in a small
 * cluster; in a larger one 4, enough for the DHT to answer (with the check that all nodes make one
 * swarm), since holders are found through the DHT, not by a connection to everyone. The nodes go on
 * connecting (bootstrap redials) after `up` returns.
 */
export function peersToJoin (n: number): number {
  if (n <= FULL_MESH_UP_TO) return n - 1
  return Math.min(n - 1, 4)
}

/**
 * The nodes node `k` of `n` bootstraps from: every other one in a small cluster. In a larger one,
 * every node dialling every other at start-up (n² noise handshakes at once) starved 64 nodes on two
 * cores for minutes, so each names the nodes at distance 1, 2, 4, 8… either way round a ring: about
 * 2·log2(n) of them, each pair named by both ends, and any node a few hops from any other. The DHT
 * finds the rest.
 */
export function bootstrapOf (k: number, n: number): number[] {
  if (n <= FULL_MESH_UP_TO) return Array.from({ length: n }, (_, j) => j).filter(j => j !== k)
  const out = new Set<number>()
  for (let d = 1; d < n; d *= 2) {
    out.add((k + d) % n)
    out.add((k - d + n) % n)
  }
  out.delete(k)
  return [...out].sort((a, b) => a - b)
}

/**
 * Waits (bounded) until every node answers /healthz with 200 and has joined the swarm: connected to
 * {@link peersToJoin} peers, the connections making one swarm (every node reachable from every other).
 */
async function waitConnected (nodes: ClusterNode[], procs: Array<{ pid?: number, startTime?: string }>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const until = Date.now() + timeoutMs
  const need = peersToJoin(nodes.length)
  const missing = new Map<string, string>(nodes.map(n => [n.name, 'not started']))
  const links = new Map<string, Set<string>>() // peer ID → the cluster's peer IDs it is connected to
  const ids = new Set(nodes.map(n => n.peerId))
  for (;;) {
    await Promise.all(nodes.map(async (node, k) => {
      if (!await isRunning(procs[k].pid!, procs[k].startTime)) {
        throw clusterError(`${node.name} exited: ${await lastLogLine(join(node.data, 'daemon.log'))} (log: ${join(node.data, 'daemon.log')})`)
      }
      // A node that joined is asked again only while the swarm is still split (its links may join the parts).
      if (!missing.has(node.name) && missing.size > 0) return
      const health = await apiGet(node.api, '/healthz')
      if (health?.status !== 200) { missing.set(node.name, health == null ? 'its API does not answer yet' : `not ready (healthz ${health.status})`); return }
      const peers = await apiGet<Array<{ peerId: string, status?: string }>>(node.api, '/v1/peers')
      const connected = new Set((peers?.body ?? []).filter(p => (p.status == null || p.status === 'open') && ids.has(p.peerId) && p.peerId !== node.peerId).map(p => p.peerId))
      links.set(node.peerId, connected)
      if (connected.size >= need) missing.delete(node.name)
      else missing.set(node.name, `connected to ${connected.size} of the ${need} peers it needs`)
    }))
    if (missing.size === 0) {
      const apart = unreachable(nodes, links)
      if (apart.length === 0) return
      for (const name of apart) missing.set(name, 'not in one swarm with node0')
    }
    if (Date.now() > until) {
      throw clusterError(`not every node had joined the swarm after ${Math.round(timeoutMs / 1000)} s: ${[...missing].map(([name, why]) => `${name} ${why}`).join('; ')}`)
    }
    signal?.throwIfAborted()
    await sleep(nodes.length > 16 ? 250 : 100)
  }
}

/** The nodes that node0 cannot reach over the connections the nodes report (either end suffices). */
function unreachable (nodes: ClusterNode[], links: Map<string, Set<string>>): string[] {
  const adjacent = new Map<string, Set<string>>(nodes.map(n => [n.peerId, new Set<string>()]))
  for (const [a, bs] of links) for (const b of bs) { adjacent.get(a)?.add(b); adjacent.get(b)?.add(a) }
  const seen = new Set([nodes[0].peerId])
  const queue = [nodes[0].peerId]
  while (queue.length > 0) {
    for (const b of adjacent.get(queue.pop()!) ?? []) if (!seen.has(b)) { seen.add(b); queue.push(b) }
  }
  return nodes.filter(n => !seen.has(n.peerId)).map(n => n.name)
}

/**
 * Undoes everything the state file records, also what a crashed `up` left half made: stops the
 * processes (and anything else found in the cluster's namespaces or marked with its dir), deletes
 * the links, then the namespaces, then the files. What could not be removed stays in the state
 * file for the next `down`; returns a description of each such thing.
 */
async function teardown (file: StateFile): Promise<string[]> {
  const state = file.state
  const left: string[] = []
  const failed = new Set<ClusterResource>()
  const of = <K extends ClusterResource['kind']>(kind: K): Array<ClusterResource & { kind: K }> =>
    state.resources.filter((r): r is ClusterResource & { kind: K } => r.kind === kind).reverse()

  // Processes: the recorded ones, whatever else lives in the namespaces, and any unrecorded daemon of this dir.
  const targets = new Map<number, string | undefined>()
  for (const p of of('process')) if (p.pid != null) targets.set(p.pid, p.startTime)
  for (const ns of of('netns')) for (const pid of await namespacePids(ns.name)) if (!targets.has(pid)) targets.set(pid, undefined)
  for (const pid of await findClusterProcesses(state.dir)) if (!targets.has(pid)) targets.set(pid, undefined)
  await Promise.all([...targets].map(async ([pid, startTime]) => {
    if (!await stopProcess(pid, startTime)) left.push(`process ${pid} did not stop, even after SIGKILL`)
  }))
  for (const p of of('process')) if (p.pid != null && await isRunning(p.pid, p.startTime)) failed.add(p)

  for (const l of of('link')) {
    try { await deleteLink(l.name) } catch (err) { failed.add(l); left.push((err as Error).message) }
  }
  for (const ns of of('netns')) {
    try { await deleteNamespace(ns.name) } catch (err) { failed.add(ns); left.push((err as Error).message) }
  }
  for (const f of of('file')) {
    try { await rm(f.path, { recursive: true, force: true, maxRetries: 3 }) } catch (err) { failed.add(f); left.push(`${f.path}: ${(err as Error).message}`) }
  }

  if (failed.size > 0 || left.length > 0) {
    state.resources = state.resources.filter(r => failed.has(r))
    await file.save()
    return left
  }
  await file.remove()
  // A state file half saved when `up` was killed (written, not yet renamed) is the cluster's too.
  for (const name of await readdir(state.dir).catch(() => [] as string[])) {
    if (/^cluster\.json\.\d+\.new$/.test(name)) await rm(join(state.dir, name), { force: true }).catch(() => {})
  }
  if (state.createdDir) {
    await rmdir(state.dir).catch(err => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(`${state.dir} was kept: it holds files the cluster did not make`)
    })
  }
  return left
}

/**
 * Removes every process, namespace, link and file of the cluster in `dir`, also after a crash of
 * `up` or of a node (a running `up` is killed first). With no cluster there it does nothing and
 * succeeds. Throws, naming each leftover, when something could not be removed.
 */
export async function clusterDown (options: { dir?: string, env?: NodeJS.ProcessEnv } = {}): Promise<ClusterDownResult> {
  const dir = resolve(options.dir ?? defaultClusterDir(options.env))
  const state = await readState(dir)
  const none = { processes: 0, namespaces: 0, links: 0, files: 0 }
  if (state == null) {
    // A crash between making the dir and writing the state file leaves an empty dir: remove that too.
    await rmdir(dir).catch(() => {})
    return { dir, found: false, removed: none }
  }
  if (state.mode === 'netns' && process.getuid?.() !== 0) throw clusterError(`the cluster in ${dir} uses network namespaces: cluster down needs root`)
  if (state.up != null && state.up.pid !== process.pid) {
    // Stop a running `up` first, so that it makes nothing more while its things are removed.
    await stopProcess(state.up.pid, state.up.startTime, { signal: 'SIGKILL' })
    await sleep(200)
    Object.assign(state, await readState(dir) ?? state)
  }
  const counts = { ...none }
  for (const r of state.resources) {
    if (r.kind === 'process') counts.processes += r.pid != null && await isRunning(r.pid, r.startTime) ? 1 : 0
    else if (r.kind === 'netns') counts.namespaces += (await listNamespaces().catch(() => [] as string[])).includes(r.name) ? 1 : 0
    else if (r.kind === 'link') counts.links += await linkExists(r.name) ? 1 : 0
    else counts.files += await stat(r.path).then(() => 1, () => 0)
  }
  const left = await teardown(StateFile.open(state))
  if (left.length > 0) throw clusterError(`cluster down could not remove everything in ${dir}: ${left.join('; ')}`)
  return { dir, found: true, removed: counts }
}

/** The cluster in `dir` as it is now: each node's process, health, peers and images. */
export async function clusterStatus (options: { dir?: string, env?: NodeJS.ProcessEnv } = {}): Promise<ClusterStatus> {
  const dir = resolve(options.dir ?? defaultClusterDir(options.env))
  const state = await readState(dir)
  if (state == null) throw clusterError(`no cluster in ${dir} (start one with \`imgswarm cluster up --nodes N\`)`)
  const proc = (name: string): (ClusterResource & { kind: 'process' }) | undefined =>
    state.resources.find((r): r is ClusterResource & { kind: 'process' } => r.kind === 'process' && r.name === name)
  const nodes = await Promise.all(state.nodes.map(async node => {
    const p = proc(node.name)
    const running = p?.pid != null && await isRunning(p.pid, p.startTime)
    let nodeState: NodeState = 'down'
    let peers: number | null = null
    let images: number | null = null
    if (running) {
      const health = await apiGet(node.api, '/healthz')
      nodeState = health == null ? 'unreachable' : health.status === 200 ? 'ready' : 'starting'
      if (health != null) {
        const list = await apiGet<Array<{ peerId: string }>>(node.api, '/v1/peers')
        peers = list?.body != null ? new Set(list.body.map(x => x.peerId)).size : null
        const imgs = await apiGet<unknown[]>(node.api, '/v1/images')
        images = Array.isArray(imgs?.body) ? imgs.body.length : null
      }
    }
    return { name: node.name, api: node.api, peerId: node.peerId, multiaddrs: node.multiaddrs, pid: p?.pid ?? null, netns: node.netns ?? null, state: nodeState, peers, images }
  }))
  const origin = proc('origin')
  return {
    dir,
    mode: state.mode,
    origin: state.origin,
    rate: state.rate,
    delay: state.delay,
    complete: state.ready,
    originServer: origin == null ? null : { pid: origin.pid ?? null, running: origin.pid != null && await isRunning(origin.pid, origin.startTime) },
    nodes
  }
}
