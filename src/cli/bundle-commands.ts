import { generateOperatorKey, keyFingerprint, loadPublicKey, loadSigner, type BundleSigner } from '../bundle/operator-key.js'
import type { BundleImage } from '../bundle/summary.js'
import { UsageError } from '../errors.js'
import { formatBytes, formatTable } from '../util/format.js'
import { openInput } from '../util/input.js'
import type { Command, CommandContext } from './command.js'
import { list, print, printJson, str } from './output.js'
import { startProgress } from './progress.js'

const shortRef = (ref: string): string => ref.slice(0, 'sha256:'.length + 12)

/** The subcommand (first positional) and the rest; flags that belong to another subcommand are refused. */
function subcommand (ctx: CommandContext, command: string, flags: Record<string, string[]>): { sub: string, args: string[] } {
  const [sub, ...args] = ctx.positionals
  if (sub === undefined) throw new UsageError(`${command} needs a subcommand: ${Object.keys(flags).join(', ')} (see imgswarm ${command} --help)`)
  const allowed = flags[sub]
  if (allowed === undefined) throw new UsageError(`unknown subcommand "${command} ${sub}" (see imgswarm ${command} --help)`)
  for (const flag of ['output', 'sign', 'trust']) {
    if (ctx.values[flag] !== undefined && !allowed.includes(flag)) throw new UsageError(`${command} ${sub} does not take --${flag}`)
  }
  return { sub, args }
}

function imageTable (images: BundleImage[]): string {
  return formatTable(['REF', 'TYPE', 'NAME', 'SIZE', 'CHUNKS'], images.map(i => [
    shortRef(i.ref), i.type, i.name === '' ? '-' : i.name, formatBytes(i.size), String(i.chunks)
  ]))
}

async function bundleCreate (ctx: CommandContext, refs: string[]): Promise<number> {
  if (refs.length === 0) throw new UsageError('bundle create needs at least one REF')
  const out = str(ctx, 'output')
  if (out === undefined) throw new UsageError('bundle create needs -o FILE (or -o - for stdout)')
  const keyPath = str(ctx, 'sign')
  // The key first: a wrong key path is reported before any work, and never takes the store from a daemon.
  const signer: BundleSigner | undefined = keyPath !== undefined ? await loadSigner(keyPath) : undefined
  const node = await ctx.node()
  const progress = startProgress('bundle', undefined, !ctx.quiet && out !== '-')
  const summary = await node.createBundle(refs, out === '-' ? process.stdout : out, { signer, signal: ctx.signal, onProgress: progress.update })
    .finally(() => { progress.stop() })
  if (out === '-') return 0 // stdout holds the bundle
  if (ctx.json) {
    printJson(ctx, { file: out, ...summary })
  } else {
    print(ctx, `wrote ${out}: ${summary.images.length} images, ${summary.blocks} blocks, ${formatBytes(summary.bytes)}; ${summary.signedBy != null ? `signed by ${summary.signedBy}` : 'unsigned'}`)
  }
  return 0
}

async function bundleImport (ctx: CommandContext, args: string[]): Promise<number> {
  if (args.length !== 1) throw new UsageError(`bundle import takes exactly one FILE (or - for stdin), got ${args.length}`)
  const trustFiles = list(ctx, 'trust')
  const trust = trustFiles != null ? await Promise.all(trustFiles.map(loadPublicKey)) : undefined
  const input = await openInput(args[0], { signal: ctx.signal })
  const progress = startProgress('bundle import', input.size, !ctx.quiet)
  try {
    const node = await ctx.node()
    const result = await node.importBundle(input.stream, { trust, signal: ctx.signal, onProgress: progress.update })
    progress.stop()
    if (ctx.json) printJson(ctx, result)
    else for (const record of result.images) print(ctx, record.ref)
  } finally {
    progress.stop()
    input.close()
  }
  return 0
}

async function bundleInspect (ctx: CommandContext, args: string[]): Promise<number> {
  if (args.length !== 1) throw new UsageError(`bundle inspect takes exactly one FILE (or - for stdin), got ${args.length}`)
  const input = await openInput(args[0], { signal: ctx.signal })
  const progress = startProgress('bundle inspect', input.size, !ctx.quiet)
  try {
    const { inspectBundle } = await import('../bundle/bundle-inspect.js')
    const report = await inspectBundle(input.stream, { signal: ctx.signal, onProgress: progress.update })
    progress.stop()
    if (ctx.json) {
      printJson(ctx, report)
      return 0
    }
    print(ctx, `${args[0]}: ${report.images.length} images, ${report.blocks} blocks (${report.chunks} chunks), ${formatBytes(report.bytes)}; every block matches its CID`)
    print(ctx, report.signedBy != null ? `signed by ${report.signedBy} (signature valid)` : 'unsigned')
    if (report.missingChunks > 0) print(ctx, `lacks ${report.missingChunks} chunks that its images need (an import takes them from the store)`)
    print(ctx, imageTable(report.images))
  } finally {
    progress.stop()
    input.close()
  }
  return 0
}

export const bundleCommands: Command[] = [
  {
    name: 'bundle',
    summary: 'carry images without a network: create, import or inspect a (signed) CAR bundle',
    usage: ['imgswarm bundle create REF… -o FILE|- [--sign KEYFILE]', '       imgswarm bundle import FILE|- [--trust PUBFILE]…', '       imgswarm bundle inspect FILE|- [--json]'].join('\n'),
    details: [
      'create   writes the images (available ones only), each chunk once, to a CARv1 file (atomically)',
      '         or stdout; --sign signs it with an operator key (imgswarm key generate).',
      'import   checks every block, the signature, and that the bundle is complete, then records its',
      '         images; on any failure nothing is imported. With --trust (repeatable), only a bundle',
      '         signed by one of those public keys is accepted.',
      'inspect  reads and checks a bundle without importing it: images, signer, blocks, bytes.',
      'See docs/bundles.md for the format and an air-gapped workflow.'
    ].join('\n'),
    options: { output: { type: 'string', short: 'o' }, sign: { type: 'string' }, trust: { type: 'string', multiple: true } },
    async run (ctx) {
      const { sub, args } = subcommand(ctx, 'bundle', { create: ['output', 'sign'], import: ['trust'], inspect: [] })
      if (sub === 'create') return await bundleCreate(ctx, args)
      if (sub === 'import') return await bundleImport(ctx, args)
      return await bundleInspect(ctx, args)
    }
  },
  {
    name: 'key',
    summary: 'make an Ed25519 operator key for signing bundles',
    usage: 'imgswarm key generate -o KEYFILE',
    details: 'Writes KEYFILE (private, PKCS8 PEM, mode 0600) and KEYFILE.pub (public, SPKI PEM) and prints the\npublic key. Refuses to overwrite either file. Give KEYFILE.pub to `bundle import --trust`.',
    options: { output: { type: 'string', short: 'o' } },
    async run (ctx) {
      const { args } = subcommand(ctx, 'key', { generate: ['output'] })
      if (args.length > 0) throw new UsageError('key generate takes no arguments besides -o KEYFILE')
      const out = str(ctx, 'output')
      if (out === undefined) throw new UsageError('key generate needs -o KEYFILE')
      const key = await generateOperatorKey(out)
      if (ctx.json) printJson(ctx, { private: key.privatePath, public: key.publicPath, publicKey: keyFingerprint(key.publicKey) })
      else print(ctx, `wrote ${key.privatePath} (private, keep it secret) and ${key.publicPath}; public key ${keyFingerprint(key.publicKey)}`)
      return 0
    }
  }
]
