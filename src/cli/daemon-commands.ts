import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { parseApiAddress } from '../api/address.js'
import { ApiClient } from '../api/client.js'
import { loadConfig } from '../node/config.js'
import { NODE_FLAGS, nodeOptionsHelp, nodeUsage } from '../node/option-flags.js'
import type { NodeConfig } from '../node/options.js'
import { checkHolder } from '../store/lease.js'
import { parseDuration } from '../util/units.js'
import { DAEMON_FILE, type DaemonInfo } from '../daemon/daemon-file.js'
import type { PeerRow } from '../daemon/peer-names.js'
import { ApiUnreachableError, ImgswarmError, UsageError } from '../errors.js'
import type { PublishResult } from '../publish.js'
import { createLogger, silentLogger } from '../util/log.js'
import { formatBytes, formatTable } from '../util/format.js'
import type { Command, CommandContext } from './command.js'
import { dataDirClient } from './connect.js'
import { print, printJson, str } from './output.js'
import { startGetProgress } from './get-progress.js'
import { jobRow } from './operator-commands.js'
import type { JobView } from '../node/job-board.js'


/**
 * The node's config from the command line, its variables and config file. Deprecation warnings go
 * to `warn`: the daemon logs them (its stderr is a JSON log), `get` prints them.
 */
async function nodeConfig (ctx: CommandContext, warn: (message: string) => void): Promise<NodeConfig> {
  return await loadConfig(ctx.values, ctx.env, ctx.dataDir, { onWarning: warn })
}

/** The client of the daemon that holds the data dir (or that --api / IMGSWARM_API names), if any. */
async function daemonClient (ctx: CommandContext): Promise<ApiClient | undefined> {
  const api = str(ctx, 'api') ?? ctx.env.IMGSWARM_API
  if (api != null && api !== '') return new ApiClient(parseApiAddress(api))
  const info = await readFile(join(ctx.dataDir, DAEMON_FILE), 'utf8').then(t => JSON.parse(t) as DaemonInfo, () => undefined)
  if (info == null) return undefined
  const client = await dataDirClient(ctx.dataDir, info.api)
  // A daemon that died without cleaning up leaves its file behind: only a live one counts.
  return await client.call('GET', '/healthz').then(() => client, (err: unknown) => (err as ImgswarmError).code === 'IMGSWARM_API_UNREACHABLE' ? undefined : client)
}

export async function requireDaemon (ctx: CommandContext): Promise<ApiClient> {
  const client = await daemonClient(ctx)
  if (client == null) throw new ApiUnreachableError(`no imgswarm daemon runs for ${ctx.dataDir} (start one with \`imgswarm daemon\`, or set IMGSWARM_API)`)
  return client
}

export const daemonCommands: Command[] = [
  {
    name: 'daemon',
    summary: 'run the peer in the foreground: serve neighbours, fetch, and answer the local API',
    usage: nodeUsage('daemon'),
    details: [
      nodeOptionsHelp(),
      '',
      'Above --high-water of --max-size, the least recently used images that are not pinned, leased, in use or kept',
      'as replicas are evicted down to --low-water. Logs are JSON lines on stderr. SIGINT or SIGTERM stops it cleanly;',
      'unfinished fetches resume at the next start.'
    ].join('\n'),
    options: NODE_FLAGS,
    async run (ctx) {
      const warnings: string[] = []
      const config = await nodeConfig(ctx, message => { warnings.push(message) })
      const log = createLogger(config.logLevel)
      for (const message of warnings) log.warn(message)
      const { Daemon } = await import('../daemon/daemon.js') // libp2p loads only for commands that need it
      // The last resort: a fault that escaped every handler is logged, and the node's other fetches,
      // streams and peers carry on rather than dying with it.
      const lastResort = (err: unknown): void => { log.error('unexpected error; the daemon carries on', { err }) }
      // Node's own warnings (a deprecation, too many listeners) go into the JSON log as JSON, never as
      // plain-text lines between its entries.
      process.removeAllListeners('warning')
      process.on('warning', w => { log.warn('Node.js warning', { warning: `${w.name}: ${w.message}` }) })
      process.on('uncaughtException', lastResort)
      process.on('unhandledRejection', lastResort)
      const daemon = await Daemon.start(config, log)
      if (!ctx.quiet && process.stdout.isTTY === true) print(ctx, `imgswarm daemon: API ${daemon.info().api}, peer ${daemon.info().peerId}`)
      await new Promise<void>(resolve => {
        if (ctx.signal.aborted) resolve()
        ctx.signal.addEventListener('abort', () => resolve(), { once: true })
      })
      await daemon.stop()
      return 0
    }
  },
  {
    name: 'get',
    summary: 'fetch images through the daemon (peers first, origin last) and write them as files',
    usage: 'imgswarm get REF… (-o FILE | --dir DIR) [--lease ID [--ttl DURATION]] [--origin URL] [--bootstrap MULTIADDR]…',
    details: 'With one REF, -o names the file; with --dir each image is written as DIR/<sha256 hex>. A file appears only once\nits image checked. --lease leases each image it got to ID (a VM about to run on it; see imgswarm lease). With\nno daemon running, a node started in this process does the fetch (it takes the daemon\'s flags) and stops.',
    options: { output: { type: 'string', short: 'o' }, dir: { type: 'string' }, lease: { type: 'string' }, ttl: { type: 'string' }, ...NODE_FLAGS },
    async run (ctx) {
      const refs = ctx.positionals
      const out = str(ctx, 'output')
      const dir = str(ctx, 'dir')
      if (refs.length === 0) throw new UsageError('get needs at least one REF')
      if ((out == null) === (dir == null)) throw new UsageError('get needs exactly one of -o FILE and --dir DIR')
      if (out != null && refs.length > 1) throw new UsageError('-o takes one REF; use --dir DIR for several')
      const target = (ref: string): string => out ?? join(dir!, ref.replace(/^sha256:/, ''))
      const holder = str(ctx, 'lease')
      const ttl = str(ctx, 'ttl')
      if (ttl != null && holder == null) throw new UsageError('--ttl goes with --lease ID')
      if (holder != null) checkHolder(holder)
      const ttlMs = ttl != null ? parseDuration(ttl) : undefined
      const client = await daemonClient(ctx)
      // Checked before any fetch starts: a missing directory is the caller's mistake, not a failed fetch.
      if (dir != null && (await stat(dir).catch(() => undefined))?.isDirectory() !== true) throw new UsageError(`--dir ${dir} is not an existing directory`)
      let results: Array<PromiseSettledResult<{ ref: string, size: number }>>
      if (client != null) {
        const progress = startGetProgress(client, refs, !ctx.quiet)
        try {
          results = await Promise.allSettled(refs.map(async (ref, i) => {
            try {
              return await client.export(ref, target(ref), { signal: ctx.signal, onProgress: bytes => { progress.update(i, bytes) } })
            } finally { progress.done(i) }
          }))
        } finally { progress.stop() }
      } else {
        results = await getInProcess(ctx, refs, target)
      }
      if (holder != null) {
        // Within the eviction grace of the fetch, so nothing can take the image before its lease.
        const service = client ?? await ctx.node()
        for (let i = 0; i < results.length; i++) {
          const r = results[i]
          if (r.status !== 'fulfilled') continue
          results[i] = await service.lease(r.value.ref, holder, { ttlMs }).then(() => r, (reason: unknown) => ({ status: 'rejected', reason }))
        }
      }
      let failed = 0
      const interrupted = ctx.signal.aborted
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          if (ctx.json) printJson(ctx, { ref: r.value.ref, file: target(refs[i]), size: r.value.size })
          else print(ctx, `${r.value.ref} ${target(refs[i])}`)
        } else if (!interrupted) {
          failed++
          process.stderr.write(`imgswarm get: ${refs[i]}: ${(r.reason as Error).message}\n`)
        }
      })
      // Ctrl-C: the files written stay (each is whole and checked); the others are not failures to list.
      if (interrupted) throw ctx.signal.reason
      return failed === 0 ? 0 : 1
    }
  },
  {
    name: 'status',
    summary: 'the running daemon: name, peer ID, version, uptime, store use and cap, peers, active fetches',
    usage: 'imgswarm status [--json] [--api ADDR]',
    details: 'Store use is what df reports: the distinct chunk bytes that stored images name (shared chunks counted once).',
    options: { api: { type: 'string' } },
    async run (ctx) {
      const client = await requireDaemon(ctx)
      const status = await client.call<any>('GET', '/v1/status')
      if (ctx.json) printJson(ctx, status)
      else {
        const store = status.store
        const jobs: JobView[] = status.fetches.jobs
        print(ctx, [
          `name      ${String(status.name)}`,
          `peer      ${String(status.peerId)}`,
          `version   ${String(status.version)}, up ${formatSeconds(status.uptimeSeconds)}`,
          `api       ${String(status.api)}`,
          `page      ${status.ui != null ? `${String(status.ui)} (imgswarm ui prints a URL that lets a browser in)` : 'none (the API is a unix socket: start the daemon with --ui 127.0.0.1:PORT)'}`,
          `ready     ${status.ready === true ? 'yes' : 'no (dialling bootstrap peers)'}`,
          `origin    ${String(status.origin ?? 'none')}`,
          `peers     ${Number(status.peers)} connected`,
          `store     ${formatBytes(store.used)} used by ${Number(store.images)} images${store.cap != null ? ` of a ${formatBytes(store.cap)} cap (${(store.used / store.cap * 100).toFixed(1)}%)` : ' (no cap)'}${store.disk != null ? `; ${formatBytes(store.disk.store)} on disk` : ''}`,
          `fetches   ${jobs.length} active`,
          ...jobs.map(j => `          ${jobRow(j).join('  ')}`),
          ...status.multiaddrs.map((a: string, i: number) => `${i === 0 ? 'listening' : '         '} ${a}`)
        ].join('\n'))
      }
      return 0
    }
  },
  {
    name: 'peers',
    summary: 'the daemon\'s connected peers: peer ID, node name, the addresses each listens on',
    usage: 'imgswarm peers [--json] [--api ADDR]',
    details: 'A name is what the peer says of itself (--name) to members of its cluster; - when it did not say. --json also\ngives each connection\'s remote address (for an inbound one, an ephemeral port).',
    options: { api: { type: 'string' } },
    async run (ctx) {
      const peers = await (await requireDaemon(ctx)).call<PeerRow[]>('GET', '/v1/peers')
      if (ctx.json) printJson(ctx, peers)
      else print(ctx, formatTable(['PEER', 'NAME', 'LISTENING ON', 'DIRECTION'], peers.map(p => [p.peerId, p.name ?? '-', p.addrs.join(',') || '-', p.direction])))
      return 0
    }
  },
  {
    name: 'publish',
    summary: 'import an image and upload it with its manifest to a writable origin (file://, s3://); prints its ref',
    usage: 'imgswarm publish FILE|- --origin URL [--type T] [--name N] [--format F]',
    options: { origin: { type: 'string' }, type: { type: 'string' }, name: { type: 'string' }, format: { type: 'string' }, api: { type: 'string' } },
    async run (ctx) {
      if (ctx.positionals.length !== 1) throw new UsageError('publish takes one FILE (or - for stdin)')
      const origin = str(ctx, 'origin') ?? ctx.env.IMGSWARM_ORIGIN
      if (origin == null) throw new UsageError('publish needs --origin URL (or IMGSWARM_ORIGIN)')
      const conn = await ctx.connection()
      const type = str(ctx, 'type')
      if (type != null && !['kernel', 'ramdisk', 'machine', 'other'].includes(type)) throw new UsageError(`--type must be one of kernel, ramdisk, machine, other, not "${type}"`)
      const { record } = await conn.service.importFile(ctx.positionals[0], { meta: { type: type as any, name: str(ctx, 'name'), format: str(ctx, 'format') }, signal: ctx.signal })
      const { publishTo } = await import('../publish.js')
      const result: PublishResult = conn.kind === 'local'
        ? await publishTo(conn.service.store, record, origin, { signal: ctx.signal })
        : await conn.client.call('POST', `/v1/images/${encodeURIComponent(record.ref)}/publish`, { origin })
      if (ctx.json) printJson(ctx, result)
      else print(ctx, result.ref)
      return 0
    }
  }
]

/** Seconds as `3d 4h`, `2h 5m`, `4m 10s` or `12s`. */
function formatSeconds (s: number): string {
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor(s % 86400 / 3600)}h`
}

/** `get` with no daemon: a node in this process dials the bootstrap peers, fetches, writes, stops. */
async function getInProcess (ctx: CommandContext, refs: string[], target: (ref: string) => string): Promise<Array<PromiseSettledResult<{ ref: string, size: number }>>> {
  const config = await nodeConfig(ctx, message => { process.stderr.write(`imgswarm get: ${message}\n`) })
  const { Daemon } = await import('../daemon/daemon.js')
  const daemon = await Daemon.start({ ...config, listen: ['/ip4/127.0.0.1/tcp/0'], api: `unix:${join(ctx.dataDir, 'get.sock')}` }, ctx.env.IMGSWARM_DEBUG === '1' ? createLogger('debug') : silentLogger)
  try {
    const until = Date.now() + 20_000
    while (!daemon.isReady && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
    return await Promise.allSettled(refs.map(async ref => {
      const record = await daemon.fetcher.fetch(await daemon.fetchRef(ref))
      await daemon.local.export(record.ref, target(ref), { signal: ctx.signal })
      return record
    }))
  } finally {
    await daemon.stop()
  }
}
