import type { ApiClient } from '../api/client.js'
import type { PeerRow } from '../daemon/peer-names.js'
import { UsageError } from '../errors.js'
import type { NodePreheat, PreheatStatus } from '../swarm/preheat.js'
import type { ReplicaPolicy } from '../swarm/replica-policies.js'
import { formatBytes, formatTable } from '../util/format.js'
import type { Command, CommandContext } from './command.js'
import { requireDaemon } from './daemon-commands.js'
import { list, print, printJson, str } from './output.js'

/** How often `preheat` asks the daemon how it goes. */
const POLL_MS = 500

export const swarmCommands: Command[] = [
  {
    name: 'preheat',
    summary: 'have cluster nodes fetch images ahead of need, through the swarm; waits until they hold them',
    usage: 'imgswarm preheat REF… [--nodes all|N|PEERID…] [--json] [--api ADDR]',
    details: [
      '--nodes all (the default): this node and every connected imgswarm peer. --nodes N: N nodes chosen per image by',
      'rendezvous hashing over the live nodes (the same ones each time while the cluster is the same). --nodes PEERID',
      '(repeatable, or comma-separated): those nodes; one that cannot be reached says why. Each node fetches with its own',
      'fetcher: neighbours first, the origin last. Exit 0 only when every chosen node holds every image.'
    ].join('\n'),
    options: { nodes: { type: 'string', multiple: true }, api: { type: 'string' } },
    async run (ctx) {
      if (ctx.positionals.length === 0) throw new UsageError('preheat needs at least one REF')
      const nodes = (list(ctx, 'nodes') ?? ['all']).flatMap(n => n.split(',')).map(n => n.trim()).filter(n => n !== '')
      const client = await requireDaemon(ctx)
      let status = await client.call<PreheatStatus>('POST', '/v1/preheat', { refs: ctx.positionals, nodes })
      const label = ctx.json ? (id: string) => id : await peerLabels(client)
      const live = !ctx.json && !ctx.quiet && process.stderr.isTTY === true ? liveDisplay(label) : undefined
      try {
        while (!status.done) {
          live?.(status)
          await sleep(POLL_MS, ctx.signal)
          status = await client.call<PreheatStatus>('GET', `/v1/preheat/${status.id}`)
        }
      } finally {
        live?.(undefined)
      }
      if (ctx.json) printJson(ctx, status)
      else print(ctx, formatTable(['NODE', 'STATE', 'IMAGES', 'BYTES', 'REASON'], status.nodes.map(n => row(n, label))))
      for (const p of status.problems) process.stderr.write(`imgswarm preheat: ${p}\n`)
      for (const n of status.nodes) if (n.state !== 'done') process.stderr.write(`imgswarm preheat: ${label(n.peerId)}: ${n.reason ?? n.state}\n`)
      return status.ok ? 0 : 1
    }
  },
  {
    name: 'replicas',
    summary: 'set, clear or list cluster-wide minimum replica counts; nodes repair shortfalls themselves',
    usage: 'imgswarm replicas [--json] [--api ADDR]\n       imgswarm replicas REF --min R\n       imgswarm replicas REF --clear',
    details: [
      'The policy spreads to every node (last writer wins) and is kept in each node\'s <data>/replicas.json. Every node',
      'counts the live holders of each image and, when there are fewer than R, the first missing ones by rendezvous hash',
      'fetch it. Nodes that hold a replica keep it as if pinned. --min 0 is --clear.'
    ].join('\n'),
    options: { min: { type: 'string' }, clear: { type: 'boolean' }, api: { type: 'string' } },
    async run (ctx) {
      const minText = str(ctx, 'min')
      if (ctx.positionals.length === 0) {
        if (minText != null || ctx.values.clear === true) throw new UsageError('--min and --clear need a REF')
        return await listPolicies(ctx, await requireDaemon(ctx))
      }
      if (ctx.positionals.length > 1) throw new UsageError('replicas takes one REF')
      if ((minText == null) === (ctx.values.clear !== true)) throw new UsageError('replicas REF needs exactly one of --min R and --clear')
      if (minText != null && !/^\d+$/.test(minText)) throw new UsageError(`--min takes a whole number, not "${minText}"`)
      const client = await requireDaemon(ctx)
      const policy = await client.call<ReplicaPolicy>('POST', '/v1/replicas', { ref: ctx.positionals[0], min: minText != null ? Number(minText) : 0 })
      if (ctx.json) printJson(ctx, policy)
      else print(ctx, policy.min === 0 ? `sha256:${policy.image} policy cleared` : `sha256:${policy.image} min ${policy.min}`)
      return 0
    }
  }
]

async function listPolicies (ctx: CommandContext, client: ApiClient): Promise<number> {
  const policies = await client.call<Array<ReplicaPolicy & { ref: string, holders?: string[] }>>('GET', '/v1/replicas')
  if (ctx.json) printJson(ctx, policies)
  else {
    const label = await peerLabels(client)
    print(ctx, formatTable(['IMAGE', 'MIN', 'HOLDERS', 'SET BY', 'SET AT'], policies.map(p => [
      p.ref, String(p.min), p.holders != null ? String(p.holders.length) : '?', label(p.by), new Date(p.ts).toISOString()
    ])))
  }
  return 0
}

/**
 * Shows a peer ID with its node name beside it: this node's from its status, connected peers' from
 * `GET /v1/peers` (what they said of themselves); a peer that said nothing is shown by its ID alone.
 */
export async function peerLabels (client: ApiClient): Promise<(peerId: string) => string> {
  const [status, peers] = await Promise.all([
    client.call<{ name?: string, peerId: string }>('GET', '/v1/status'),
    client.call<PeerRow[]>('GET', '/v1/peers')
  ])
  const names = new Map<string, string>()
  for (const p of peers) if (p.name != null) names.set(p.peerId, p.name)
  return id => {
    if (id === status.peerId) return `${id} (${status.name != null ? `${status.name}, ` : ''}this node)`
    const name = names.get(id)
    return name != null ? `${id} (${name})` : id
  }
}

function row (n: NodePreheat, label: (peerId: string) => string): string[] {
  const held = n.images.filter(i => i.state === 'available').length
  const bytes = n.images.reduce((s, i) => s + i.bytes.local + i.bytes.peer + i.bytes.origin, 0)
  const size = n.images.reduce((s, i) => s + (i.size ?? 0), 0)
  return [
    label(n.peerId),
    n.state,
    `${held}/${n.images.length}`,
    size > 0 ? `${formatBytes(bytes)} / ${formatBytes(size)}` : formatBytes(bytes),
    n.state === 'failed' ? (n.reason ?? '') : ''
  ]
}

/** One line per node on stderr, redrawn in place at each poll; `undefined` clears it. */
function liveDisplay (label: (peerId: string) => string): (status: PreheatStatus | undefined) => void {
  let drawn = 0
  // Each node's bytes at the first look, to tell its rate and ETA from.
  const first = new Map<string, { at: number, bytes: number }>()
  return status => {
    let out = drawn > 0 ? `\x1b[${drawn}A` : ''
    const rows = status == null ? [] : status.nodes.map(n => {
      const bytes = n.images.reduce((s, i) => s + i.bytes.local + i.bytes.peer + i.bytes.origin, 0)
      const size = n.images.reduce((s, i) => s + (i.size ?? 0), 0)
      const seen = first.get(n.peerId) ?? { at: Date.now(), bytes }
      first.set(n.peerId, seen)
      const rate = (bytes - seen.bytes) / Math.max(0.001, (Date.now() - seen.at) / 1000)
      const running = n.state === 'running'
      return [
        ...row(n, label),
        size > 0 ? `${Math.min(100, bytes / size * 100).toFixed(1)}%` : '-',
        running && rate > 0 ? `${formatBytes(rate)}/s` : '-',
        running && rate > 0 && size > 0 ? `${Math.max(0, Math.round((size - bytes) / rate))}s` : '-'
      ]
    })
    const lines = status == null ? [] : formatTable(['NODE', 'STATE', 'IMAGES', 'BYTES', 'REASON', 'DONE', 'RATE', 'ETA'], rows).split('\n')
    for (let i = 0; i < Math.max(lines.length, drawn); i++) out += `\x1b[2K${lines[i] ?? ''}\n`
    if (status == null && drawn > 0) out += `\x1b[${drawn}A`
    drawn = status == null ? 0 : lines.length
    process.stderr.write(out)
  }
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
