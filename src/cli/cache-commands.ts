import { UsageError } from '../errors.js'
import type { Lease } from '../store/lease.js'
import { formatBytes, formatTable } from '../util/format.js'
import { parseDuration } from '../util/units.js'
import type { Command, CommandContext } from './command.js'
import { print, printJson, str } from './output.js'

function oneRef (ctx: CommandContext): string {
  if (ctx.positionals.length !== 1) throw new UsageError(`expected exactly one REF, got ${ctx.positionals.length}`)
  return ctx.positionals[0]
}

function holderOf (ctx: CommandContext): string {
  const holder = str(ctx, 'holder')
  if (holder === undefined) throw new UsageError('--holder ID is required (the VM or agent that holds the image)')
  return holder
}

function expiry (l: Lease): string {
  return l.expires != null ? l.expires.replace(/\.\d+Z$/, 'Z') : 'until released'
}

export const cacheCommands: Command[] = [
  {
    name: 'lease',
    summary: 'keep an image for a holder (a running VM): never evicted, rm refuses it',
    usage: 'imgswarm lease REF --holder ID [--ttl DURATION] [--json]',
    details: 'Leasing again renews. --ttl (90s, 30m, 12h, 7d) makes the lease lapse by itself unless renewed;\nwithout it the lease lasts until `imgswarm release`. Leases survive daemon restarts.',
    options: { holder: { type: 'string' }, ttl: { type: 'string' } },
    async run (ctx) {
      const ref = oneRef(ctx)
      const holder = holderOf(ctx)
      const ttl = str(ctx, 'ttl')
      const lease = await (await ctx.node()).lease(ref, holder, { ttlMs: ttl != null ? parseDuration(ttl) : undefined })
      if (ctx.json) printJson(ctx, lease)
      else print(ctx, `leased ${lease.ref} to ${lease.holder} ${lease.expires != null ? `until ${expiry(lease)}` : 'until released'}`)
      return 0
    }
  },
  {
    name: 'release',
    summary: 'drop a holder\'s lease on an image',
    usage: 'imgswarm release REF --holder ID [--json]',
    details: 'Releasing a lease that is not there succeeds and says so, so an agent may retry it.',
    options: { holder: { type: 'string' } },
    async run (ctx) {
      const result = await (await ctx.node()).release(oneRef(ctx), holderOf(ctx))
      if (ctx.json) printJson(ctx, result)
      else print(ctx, result.released ? `released ${result.ref} from ${result.holder}` : `${result.holder} held no lease on ${result.ref}`)
      return 0
    }
  },
  {
    name: 'leases',
    summary: 'list live leases',
    usage: 'imgswarm leases [--json]',
    options: {},
    async run (ctx) {
      if (ctx.positionals.length > 0) throw new UsageError('leases takes no arguments')
      const leases = (await (await ctx.node()).leases()).sort((a, b) => a.ref.localeCompare(b.ref) || a.holder.localeCompare(b.holder))
      if (ctx.json) printJson(ctx, leases)
      else print(ctx, formatTable(['REF', 'HOLDER', 'SINCE', 'EXPIRES'], leases.map(l => [l.ref.slice(0, 19), l.holder, l.created.replace(/\.\d+Z$/, 'Z'), expiry(l)])))
      return 0
    }
  },
  {
    name: 'df',
    summary: 'show the store\'s size, cap, and what is pinned, leased, in use and reclaimable',
    usage: 'imgswarm df [--json]',
    details: 'Sizes count each distinct chunk once. The cap is the daemon\'s --max-size; a store opened without a daemon has none.',
    options: {},
    async run (ctx) {
      if (ctx.positionals.length > 0) throw new UsageError('df takes no arguments')
      const r = await (await ctx.node()).df()
      if (ctx.json) {
        printJson(ctx, r)
        return 0
      }
      const pct = (n: number): string => r.cap != null && r.cap > 0 ? ` (${(100 * n / r.cap).toFixed(1)}% of cap)` : ''
      print(ctx, [
        `images       ${r.images}`,
        `used         ${formatBytes(r.used)}${pct(r.used)}`,
        `cap          ${r.cap != null ? `${formatBytes(r.cap)}; evicts above ${Math.round(r.highWater! * 100)}% down to ${Math.round(r.lowWater! * 100)}%` : 'none (no --max-size)'}`,
        `pinned       ${formatBytes(r.pinned)}`,
        `leased       ${formatBytes(r.leased)}`,
        `in use       ${formatBytes(r.inUse)}`,
        `reclaimable  ${formatBytes(r.reclaimable)}`,
        ...r.disk != null ? [`on disk      ${formatBytes(r.disk.store)} (disk: ${formatBytes(r.disk.free)} free of ${formatBytes(r.disk.total)})`] : []
      ].join('\n'))
      return 0
    }
  }
]
