import { copyFile, mkdir, readdir, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { clusterDown, clusterStatus, clusterUp, defaultClusterDir, MAX_NODES } from '../cluster/cluster.js'
import { UsageError } from '../errors.js'
import { optionOf } from '../node/options.js'
import { formatTable } from '../util/format.js'
import { LOG_LEVELS, type LogLevel } from '../util/log.js'
import { parseSizeLimit } from '../util/units.js'
import type { Command, CommandContext } from './command.js'
import { print, printJson, str } from './output.js'


function wholeNumber (text: string | undefined, flag: string): number | undefined {
  if (text == null) return undefined
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} takes a whole number, not "${text}"`)
  return Number(text)
}

async function up (ctx: CommandContext): Promise<number> {
  const nodes = wholeNumber(str(ctx, 'nodes'), '--nodes')
  if (nodes == null) throw new UsageError('cluster up needs --nodes N')
  const logLevel = str(ctx, 'log-level')
  if (logLevel != null && !(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`)
  const timeout = wholeNumber(str(ctx, 'timeout'), '--timeout')
  // Checked here, so that a typo fails before any node starts.
  const maxSize = str(ctx, 'max-size')
  if (maxSize != null) parseSizeLimit(maxSize)
  // Passed to every daemon as given, read here by the daemon's own option so that the units agree.
  const interval = str(ctx, 'replica-interval')
  if (interval != null) optionOf('replicaIntervalMs').unit.read(interval, '--replica-interval')
  const daemonFlags = [...maxSize != null ? ['--max-size', maxSize] : [], ...interval != null ? ['--replica-interval', interval] : []]
  // Each node's API is a unix socket, which no browser opens: the cluster page gets a loopback port of
  // its own (`imgswarm ui --api unix:DIR/nodeK/api.sock` prints its URL). Inside a namespace that
  // loopback is the namespace's own, out of a browser's reach, so not there.
  if (ctx.values.netns !== true) daemonFlags.push('--ui', '127.0.0.1:0')
  const talk = !ctx.json && !ctx.quiet
  const info = await clusterUp({
    nodes,
    netns: ctx.values.netns === true,
    rate: str(ctx, 'rate'),
    delay: str(ctx, 'delay'),
    origin: str(ctx, 'origin'),
    originDir: str(ctx, 'origin-dir'),
    dir: str(ctx, 'dir'),
    timeoutMs: timeout != null ? timeout * 1000 : undefined,
    logLevel: logLevel as LogLevel | undefined,
    daemonFlags,
    signal: ctx.signal,
    env: ctx.env,
    onProgress: talk ? line => { process.stderr.write(`imgswarm cluster: ${line}\n`) } : undefined
  })
  if (ctx.json) {
    printJson(ctx, info)
    return 0
  }
  print(ctx, formatTable(['NODE', 'PEER ID', 'ADDRESS', 'API'], info.nodes.map(n => [n.name, n.peerId, n.multiaddrs[0]?.replace(/\/p2p\/.*$/, '') ?? '', n.api])))
  print(ctx, [
    '',
    `${info.nodes.length} node${info.nodes.length === 1 ? ' is' : 's are'} ready and in one swarm; origin: ${info.origin ?? 'none'}.`,
    'Talk to a node by its API, e.g.:',
    `  export IMGSWARM_API=${info.nodes[0].api}`,
    '  imgswarm import disk.img && imgswarm status',
    `Logs: ${info.dir}/nodeK/daemon.log. Stop everything: imgswarm cluster down${dirFlag(ctx)}`
  ].join('\n'))
  return 0
}

function dirFlag (ctx: CommandContext): string {
  const dir = str(ctx, 'dir')
  return dir != null ? ` --dir ${dir}` : ''
}

async function status (ctx: CommandContext): Promise<number> {
  const s = await clusterStatus({ dir: str(ctx, 'dir'), env: ctx.env })
  if (ctx.json) {
    printJson(ctx, s)
    return 0
  }
  const shaping = s.mode === 'netns' ? `, rate ${s.rate ?? 'unlimited'}, delay ${s.delay ?? 'none'}` : ''
  print(ctx, `cluster ${s.dir} (${s.mode}, ${s.nodes.length} nodes${shaping}${s.complete ? '' : '; up did not finish'})`)
  if (s.origin != null) print(ctx, `origin  ${s.origin}${s.originServer != null ? (s.originServer.running ? ` (server pid ${s.originServer.pid ?? '?'})` : ' (server down)') : ''}`)
  const dash = (v: number | null): string => v == null ? '-' : String(v)
  print(ctx, formatTable(['NODE', 'STATE', 'PID', 'PEERS', 'IMAGES', 'API'],
    s.nodes.map(n => [n.name, n.state, dash(n.pid), dash(n.peers), dash(n.images), n.api])))
  return 0
}

async function down (ctx: CommandContext): Promise<number> {
  const kept = ctx.values['keep-logs'] === true ? await keepLogs(resolve(str(ctx, 'dir') ?? defaultClusterDir(ctx.env))) : undefined
  const result = await clusterDown({ dir: str(ctx, 'dir'), env: ctx.env })
  if (ctx.json) printJson(ctx, { ...result, ...(kept != null ? { logs: kept } : {}) })
  else if (!result.found) print(ctx, `no cluster in ${result.dir}: nothing to remove`)
  else {
    const r = result.removed
    print(ctx, `removed the cluster in ${result.dir}: ${r.processes} processes, ${r.namespaces} namespaces, ${r.links} links, ${r.files} files and directories`)
    if (kept != null) print(ctx, `kept ${kept.files.length} logs in ${kept.dir}`)
  }
  return 0
}

/**
 * Copies the cluster's logs (each node's daemon.log, the origin server's log) out of its dir before
 * `down` removes it, into `<dir>-logs-<time>/`: the nodes are still running, so the copies end with
 * their last lines before the stop.
 */
async function keepLogs (dir: string): Promise<{ dir: string, files: string[] } | undefined> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined)
  if (entries == null) return undefined
  const logs: Array<{ from: string, name: string }> = []
  for (const e of entries) {
    if (e.isFile() && e.name.endsWith('.log')) logs.push({ from: join(dir, e.name), name: e.name })
    if (e.isDirectory()) {
      const log = join(dir, e.name, 'daemon.log')
      if (await stat(log).then(s => s.isFile(), () => false)) logs.push({ from: log, name: `${e.name}.log` })
    }
  }
  if (logs.length === 0) return undefined
  const target = `${dir}-logs-${new Date().toISOString().replace(/[:.]/g, '-')}`
  await mkdir(target, { recursive: true })
  for (const l of logs) await copyFile(l.from, join(target, l.name))
  return { dir: target, files: logs.map(l => l.name) }
}

/** `imgswarm cluster up|status|down`: a test cluster of N daemons on this machine. */
export const clusterCommands: Command[] = [
  {
    name: 'cluster',
    summary: 'run a test cluster of N nodes on this machine (loopback, or network namespaces with tc limits)',
    usage: [
      `imgswarm cluster up --nodes N [--netns] [--rate RATE] [--delay D] [--origin URL | --origin-dir DIR] [--dir DIR]\n         [--max-size SIZE] [--replica-interval DURATION] [--json]`,
      '       imgswarm cluster status [--dir DIR] [--json]',
      '       imgswarm cluster down [--dir DIR] [--keep-logs]'
    ].join('\n'),
    details: [
      `up starts N daemons (1 to ${MAX_NODES}), each bootstrapped from all the others up to 8 nodes and beyond from`,
      '~2·log2(N) of them (those 1, 2, 4, 8… places away round a ring), and returns once every node answers /healthz',
      'with 200 and has joined the swarm (connected to every other node up to 8 nodes; beyond, to 4 peers, all',
      'nodes in one swarm: holders are found through the DHT). Each node keeps its data in DIR/nodeK, logs',
      'to DIR/nodeK/daemon.log and answers on unix:DIR/nodeK/api.sock: use that as IMGSWARM_API (or --api).',
      '  --nodes N         how many nodes',
      '  --netns           (root) one network namespace per node, veth pairs on a bridge, addresses from',
      '                    198.18.0.0/15, no route out; without it the nodes listen on 127.0.0.1 ports',
      '  --rate RATE       with --netns: tc limit on every host\'s link, both directions (100mbit, 1gbit)',
      '  --delay D         with --netns: tc netem delay on every host\'s link, each direction (5ms); one way',
      '                    between two nodes is then 2×D. Needs a kernel with netem',
      '  --origin URL      an origin every node uses (file:///dir, http://…, s3://…)',
      '  --origin-dir DIR  serve DIR (as `publish --origin file://DIR` leaves it) from an HTTP origin with Range',
      '                    support (in its own namespace, shaped too, with --netns) and give its URL to every node',
      `  --dir DIR         where the cluster lives (env IMGSWARM_CLUSTER_DIR; default ${defaultClusterDir()})`,
      '  --timeout S       how long up waits for the nodes (default 30 + 2 per node)',
      '  --log-level L     the daemons\' log level (default info)',
      '  --max-size SIZE   every daemon\'s store cap (see imgswarm daemon --help)',
      '  --replica-interval DURATION',
      '                    every daemon\'s replica repair period: 5s, 1m, or seconds (default 30s)',
      '  --json            up: {dir, origin, nodes: [{name, api, peerId, multiaddrs}]}; status: that with each node\'s state',
      'If up fails or is interrupted it removes what it made. down stops every process and removes every',
      'namespace, link and file of the cluster, also after a crash of up or of a node; with no cluster it does nothing.',
      '  --keep-logs       down: first copy every node\'s daemon.log (and the origin\'s log) to DIR-logs-<time>/'
    ].join('\n'),
    options: {
      nodes: { type: 'string', short: 'n' },
      netns: { type: 'boolean' },
      rate: { type: 'string' },
      delay: { type: 'string' },
      origin: { type: 'string' },
      'origin-dir': { type: 'string' },
      dir: { type: 'string' },
      timeout: { type: 'string' },
      'log-level': { type: 'string' },
      'max-size': { type: 'string' },
      'replica-interval': { type: 'string' },
      'keep-logs': { type: 'boolean' }
    },
    async run (ctx) {
      const [action, ...extra] = ctx.positionals
      if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`)
      const upOnly = ['nodes', 'netns', 'rate', 'delay', 'origin', 'origin-dir', 'timeout', 'log-level', 'max-size', 'replica-interval'].filter(k => ctx.values[k] !== undefined)
      if (action !== 'up' && upOnly.length > 0 && action !== undefined) throw new UsageError(`--${upOnly[0]} is a flag of cluster up, not cluster ${action}`)
      if (ctx.values['keep-logs'] === true && action !== 'down') throw new UsageError('--keep-logs is a flag of cluster down')
      switch (action) {
        case 'up': return await up(ctx)
        case 'status': return await status(ctx)
        case 'down': return await down(ctx)
        case undefined: throw new UsageError('cluster needs an action: up, status or down (see imgswarm cluster --help)')
        default: throw new UsageError(`unknown cluster action "${action}": expected up, status or down`)
      }
    }
  }
]
