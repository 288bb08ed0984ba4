import { IMAGE_TYPES, type ImageType } from '../chunks/image-types.js'
import { UsageError } from '../errors.js'
import { LocalNode, type ImageListing, type ReceivedSoFar } from '../local-node.js'
import { STORE_FORMAT_VERSION } from '../store/level-store.js'
import type { MigrationProgress } from '../store/migrate-format-1.js'
import type { ImageRecord } from '../store/image-record.js'
import { formatBytes, formatTable } from '../util/format.js'
import type { Command, CommandContext } from './command.js'
import { print, printJson, str } from './output.js'
import { startProgress, type Progress } from './progress.js'
import { openInput } from '../util/input.js'

function one (ctx: CommandContext, what: string): string {
  if (ctx.positionals.length !== 1) throw new UsageError(`expected exactly one ${what}, got ${ctx.positionals.length}`)
  return ctx.positionals[0]
}

function imageType (s: string | undefined): ImageType | undefined {
  if (s === undefined) return undefined
  if (!(IMAGE_TYPES as readonly string[]).includes(s)) throw new UsageError(`--type must be one of ${IMAGE_TYPES.join(', ')}, not "${s}"`)
  return s as ImageType
}

const shortRef = (ref: string): string => ref.slice(0, 'sha256:'.length + 12)

/** The state, with how far a fetch in flight is: `fetching 42% (12.0 MiB)`. */
function stateOf (r: ImageListing): string {
  if (r.received == null) return r.state
  return `${r.state} ${r.received.percent != null ? `${r.received.percent.toFixed(0)}% ` : ''}(${formatBytes(r.received.bytes)})`
}

/** Why eviction keeps an image: `pinned`, `replica` (the cluster's replica policy), `leased(N)`, or `-`. */
function held (r: ImageListing): string {
  const why = [...r.pinned ? ['pinned'] : [], ...r.replica === true ? ['replica'] : [], ...r.leasedBy.length > 0 ? [`leased(${r.leasedBy.length})`] : []]
  return why.length > 0 ? why.join(',') : '-'
}

/**
 * Bytes that came from the store itself, neighbour peers and the origin (`-` for records written before
 * imgswarm kept them); for an image being fetched, what its fetch has so far.
 */
function sourceColumns (r: ImageRecord & { received?: ReceivedSoFar }): string[] {
  if (r.received != null) return [formatBytes(r.received.local), formatBytes(r.received.peer), formatBytes(r.received.origin)]
  const s = r.sources
  return s == null ? ['-', '-', '-'] : [formatBytes(s.local), formatBytes(s.peers), formatBytes(s.origin)]
}

export const storeCommands: Command[] = [
  {
    name: 'import',
    summary: 'store an image file (or stdin) as chunks; prints its ref',
    usage: 'imgswarm import FILE|- [--type kernel|ramdisk|machine|other] [--name NAME] [--format FORMAT]',
    options: { type: { type: 'string' }, name: { type: 'string' }, format: { type: 'string' } },
    async run (ctx) {
      const path = one(ctx, 'FILE (or - for stdin)')
      const type = imageType(str(ctx, 'type'))
      // The input first: a wrong path is reported as such, and never takes the store from a running node.
      const input = await openInput(path, { signal: ctx.signal })
      let progress: Progress | undefined
      try {
        const node = await ctx.node()
        progress = startProgress('import', input.size, !ctx.quiet)
        const { record, newChunks, newBytes } = await node.importStream(input.stream, {
          meta: { type, name: str(ctx, 'name'), format: str(ctx, 'format') },
          signal: ctx.signal,
          onProgress: progress.update
        })
        progress.stop()
        if (ctx.json) printJson(ctx, { ...record, newChunks, newBytes })
        else print(ctx, record.ref)
      } finally {
        progress?.stop()
        input.close()
      }
      return 0
    }
  },
  {
    name: 'export',
    summary: 'write an image\'s exact bytes to a file (sparse, atomic) or stdout',
    usage: 'imgswarm export REF -o FILE|-',
    options: { output: { type: 'string', short: 'o' } },
    async run (ctx) {
      const ref = one(ctx, 'REF')
      const out = str(ctx, 'output')
      if (out === undefined) throw new UsageError('export needs -o FILE (or -o - for stdout)')
      const node = await ctx.node()
      const record = await node.inspect(ref)
      const progress = startProgress('export', record.size, !ctx.quiet && out !== '-')
      try {
        await node.export(ref, out === '-' ? process.stdout : out, { signal: ctx.signal, onProgress: progress.update })
      } finally {
        progress.stop()
      }
      return 0
    }
  },
  {
    name: 'ls',
    summary: 'list stored images: state, pin and leases, hits, last access, bytes by source',
    usage: 'imgswarm ls [--json]',
    options: {},
    async run (ctx) {
      const images = (await (await ctx.node()).list()).sort((a, b) => a.created.localeCompare(b.created))
      if (ctx.json) {
        printJson(ctx, images)
        return 0
      }
      // The Glance ids column only where some image has one (a node with a Glance origin).
      const glance = images.some(r => (r.glanceIds?.length ?? 0) > 0)
      print(ctx, formatTable(['REF', 'TYPE', 'NAME', 'SIZE', 'STATE', 'HELD', 'HITS', 'LAST ACCESS', 'LOCAL', 'PEERS', 'ORIGIN', ...glance ? ['GLANCE ID'] : []], images.map(r => [
        shortRef(r.ref), r.type, r.name === '' ? '-' : r.name, formatBytes(r.size), stateOf(r), held(r), String(r.hits ?? 0),
        r.lastAccess.replace(/\.\d+Z$/, 'Z'), ...sourceColumns(r), ...glance ? [r.glanceIds?.join(',') ?? '-'] : []
      ])))
      return 0
    }
  },
  {
    name: 'inspect',
    summary: 'show one image as JSON: state, manifest, chunks, shared and unique bytes',
    usage: 'imgswarm inspect REF [--json]',
    options: {},
    async run (ctx) {
      printJson(ctx, await (await ctx.node()).inspect(one(ctx, 'REF')))
      return 0
    }
  },
  {
    name: 'profile',
    summary: 'show or drop an image\'s boot profile (the chunks its VMs read first)',
    usage: 'imgswarm profile show|rm REF [--json]',
    details: [
      'show  the boot profile: the chunks a VM read in its first seconds (recorded on this node from',
      '      NBD or HTTP range reads, or taken from a peer or the origin), which a fetch takes first.',
      'rm    drops it; the next boot from this node records a new one.'
    ].join('\n'),
    options: {},
    async run (ctx) {
      const [sub, ...args] = ctx.positionals
      if (sub !== 'show' && sub !== 'rm') throw new UsageError('profile needs a subcommand: show or rm (see imgswarm profile --help)')
      if (args.length !== 1) throw new UsageError(`profile ${sub} takes exactly one REF, got ${args.length}`)
      const node = await ctx.node()
      if (sub === 'rm') {
        const out = await node.removeBootProfile(args[0])
        if (ctx.json) printJson(ctx, out)
        else print(ctx, out.removed ? `dropped the boot profile of ${out.ref}` : `${out.ref} had no boot profile`)
        return 0
      }
      const p = await node.bootProfile(args[0])
      if (ctx.json) {
        printJson(ctx, p)
        return 0
      }
      print(ctx, `${p.ref}: boot profile of ${p.chunks} chunks (${formatBytes(p.bytes)}), ${formatBytes(p.encodedBytes)} stored, recorded ${p.recorded.replace(/\.\d+Z$/, 'Z')} under ${p.manifest}`)
      const head = p.order.slice(0, 32).join(' ')
      print(ctx, `read order: ${head}${p.order.length > 32 ? ` … (${p.order.length - 32} more)` : ''}`)
      return 0
    }
  },
  {
    name: 'rm',
    summary: 'remove an image and free the chunks no other image uses',
    usage: 'imgswarm rm REF [--force]',
    details: 'A pinned image is kept unless --force is given.',
    options: { force: { type: 'boolean', short: 'f' } },
    async run (ctx) {
      const { record, freed } = await (await ctx.node()).remove(one(ctx, 'REF'), { force: ctx.values.force === true })
      if (ctx.json) printJson(ctx, { removed: record.ref, freedChunks: freed.chunks, freedBytes: freed.bytes })
      else print(ctx, `removed ${record.ref}; freed ${formatBytes(freed.bytes)} in ${freed.chunks} chunks`)
      return 0
    }
  },
  ...(['pin', 'unpin'] as const).map((verb): Command => ({
    name: verb,
    summary: verb === 'pin' ? 'keep an image through gc and eviction' : 'let gc and eviction remove an image again',
    usage: `imgswarm ${verb} REF`,
    options: {},
    async run (ctx) {
      const node = await ctx.node()
      const record: ImageRecord = verb === 'pin' ? await node.pin(one(ctx, 'REF')) : await node.unpin(one(ctx, 'REF'))
      if (ctx.json) printJson(ctx, record)
      else print(ctx, `${verb === 'pin' ? 'pinned' : 'unpinned'} ${record.ref}`)
      return 0
    }
  })),
  {
    name: 'gc',
    summary: 'delete chunks that no stored image uses; prints what it freed',
    usage: 'imgswarm gc [--json]',
    details: 'LevelDB gives the space of deleted chunks back when it compacts their tables: gc compacts the\nfreed ranges of the chunk log at once (chunks are in write order, so an image is mostly one range).',
    options: {},
    async run (ctx) {
      const r = await (await ctx.node()).gc()
      if (ctx.json) printJson(ctx, { freedChunks: r.chunks, freedBytes: r.bytes, keptImages: r.keptImages })
      else print(ctx, `freed ${formatBytes(r.bytes)} in ${r.chunks} chunks; kept ${r.keptImages} images`)
      return 0
    }
  },
  {
    name: 'verify',
    summary: 'check every chunk of one or all available images; exit 1 on damage',
    usage: 'imgswarm verify [REF] [--json]',
    details: [
      'Damaged or missing chunks are named with their images; those images are marked failed',
      '(re-import or fetch them to repair) and damaged chunks are dropped. Images that were failed',
      'already are checked and named too, and so is data that LevelDB dropped from a damaged',
      'write-ahead log when it opened the store. Exit 1 when anything is wrong.'
    ].join('\n'),
    options: {},
    async run (ctx) {
      if (ctx.positionals.length > 1) throw new UsageError('verify takes at most one REF')
      const node = await ctx.node()
      const progress = startProgress('verify', undefined, !ctx.quiet)
      const report = await node.verify(ctx.positionals[0], { signal: ctx.signal, onProgress: progress.update }).finally(() => progress.stop())
      // A local store reports what LevelDB dropped on opening it (see LocalNode.verify); a daemon's API may not.
      const recoveryDamage = (report as { recoveryDamage?: string }).recoveryDamage
      const bad = report.failed.length > 0 || recoveryDamage != null
      if (ctx.json) {
        printJson(ctx, report)
      } else {
        if (recoveryDamage != null) process.stderr.write(`store damaged: ${recoveryDamage}; images written just before may be missing\n`)
        for (const p of report.problems) process.stderr.write(`${p.problem} ${p.chunk === 'manifest' ? 'manifest' : `chunk ${p.chunk}`} of ${p.image}\n`)
        const withProblems = new Set(report.problems.map(p => p.image))
        for (const ref of report.failed) if (!withProblems.has(ref)) process.stderr.write(`failed image ${ref}: its chunks are intact, but it failed before (imgswarm inspect shows why)\n`)
        const summary = `verified ${report.images} images, ${report.chunks} chunks, ${formatBytes(report.bytes)}`
        if (!bad) print(ctx, `${summary}: all good`)
        else if (report.failed.length === 0) print(ctx, `${summary}: chunks all good, but the store lost data (see above)`)
        else print(ctx, `${summary}: ${report.problems.length} bad chunks; ${report.failed.length} images failed (${report.failed.join(', ')}): re-import, fetch or rm them`)
      }
      return bad ? 1 : 0
    }
  },
  {
    name: 'migrate',
    summary: 'bring a store written by an older imgswarm to the current format',
    usage: 'imgswarm migrate [--json]',
    details: [
      'Any command migrates a store of an older format when it first opens it; this does it on its own,',
      'with progress. A format-1 store keeps its chunks in the catalog keyed by digest; they move to the',
      'chunk log in batches, each crash-safe: stopped or killed, the next open goes on where it stopped.',
      'Images, records, pins, leases and manifests are kept as they are. The store needs free space for',
      'a few hundred MiB more than it holds (moved chunks are compacted away as it goes).'
    ].join('\n'),
    options: {},
    async run (ctx) {
      let progress: Progress | undefined
      let lastLine = 0
      let moved: MigrationProgress | undefined
      const node = await LocalNode.open({
        dir: ctx.dataDir,
        signal: ctx.signal,
        onMigrate: p => {
          moved = p
          progress ??= startProgress('migrate', p.totalBytes, !ctx.quiet)
          progress.update(p.bytes)
          // Without a terminal, a line now and then, so a log shows it is going on.
          if (!ctx.quiet && !ctx.json && process.stderr.isTTY !== true && !p.done && (lastLine === 0 || Date.now() - lastLine > 1000)) {
            lastLine = Date.now()
            process.stderr.write(`migrating: ${p.chunks} chunks, ${formatBytes(p.bytes)} moved${p.totalBytes != null ? ` of about ${formatBytes(p.totalBytes)}` : ''}\n`)
          }
        }
      }).finally(() => progress?.stop())
      await node.close()
      if (ctx.json) {
        printJson(ctx, { format: STORE_FORMAT_VERSION, migrated: moved != null, chunks: moved?.chunks ?? 0, bytes: moved?.bytes ?? 0, damaged: moved?.damaged ?? 0 })
      } else if (moved == null) {
        print(ctx, `the store is at format ${STORE_FORMAT_VERSION}: nothing to migrate`)
      } else {
        const damaged = moved.damaged > 0 ? `; ${moved.damaged} damaged chunks dropped (imgswarm verify names their images)` : ''
        print(ctx, `migrated the store to format ${STORE_FORMAT_VERSION}: moved ${moved.chunks} chunks, ${formatBytes(moved.bytes)}${damaged}`)
      }
      return 0
    }
  }
]
