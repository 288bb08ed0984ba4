import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ImgswarmError, InterruptedError, UsageError } from '../errors.js'
import { cacheCommands } from './cache-commands.js'
import { clusterCommands } from './cluster-commands.js'
import type { Command, CommandContext } from './command.js'
import { defaultDataDir } from './data-dir.js'
import { connect, type Connection } from './connect.js'
import { daemonCommands } from './daemon-commands.js'
import { storeCommands } from './store-commands.js'
import { bundleCommands } from './bundle-commands.js'
import { swarmCommands } from './swarm-commands.js'
import { packageVersion } from '../util/version.js'
import { operatorCommands } from './operator-commands.js'

const GLOBAL_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  data: { type: 'string' },
  api: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' }
}

const commands: Command[] = [...storeCommands, ...cacheCommands, ...bundleCommands, ...daemonCommands, ...swarmCommands, ...operatorCommands, ...clusterCommands]

function mainHelp (): string {
  const width = Math.max(...commands.map(c => c.name.length))
  return [
    'imgswarm: a peer-to-peer cache for VM images',
    '',
    'usage: imgswarm COMMAND [ARGS] [--data DIR] [--json] [--quiet]',
    '',
    'commands:',
    ...commands.map(c => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'global flags:',
    '  --data DIR    data dir (env IMGSWARM_DATA; default /var/lib/imgswarm as root,',
    '                else ~/.local/share/imgswarm)',
    '  --api ADDR    use the daemon at ADDR (env IMGSWARM_API); without it, a daemon that holds',
    '                the data dir is used through its API, else the store is opened here',
    '  --json        print data as JSON',
    '  -q, --quiet   no progress bars',
    '  -h, --help    help; `imgswarm COMMAND --help` for one command',
    '  --version     print the version',
    '',
    'REF is sha256:<64 hex>, a unique hex prefix of at least 12 digits, or a manifest CID.'
  ].join('\n')
}

function commandHelp (c: Command): string {
  return [`usage: ${c.usage}`, '', c.summary + '.', ...(c.details != null ? ['', c.details] : [])].join('\n')
}

/** Runs one command line; returns the exit code. Errors become one line on stderr. */
export async function main (argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp() + '\n')
    return name === undefined ? 2 : 0
  }
  if (name === '--version') {
    process.stdout.write(packageVersion() + '\n')
    return 0
  }
  const command = commands.find(c => c.name === name)
  if (command === undefined) {
    process.stderr.write(`imgswarm: unknown command "${name}" (see imgswarm --help)\n`)
    return 2
  }
  const controller = new AbortController()
  const onSignal = (): void => { controller.abort(new InterruptedError()) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let connection: Promise<Connection> | undefined
  try {
    const { values, positionals } = parseCommandLine(command, rest)
    if (values.help === true) {
      process.stdout.write(commandHelp(command) + '\n')
      return 0
    }
    const dataDir = typeof values.data === 'string' ? values.data : defaultDataDir(env)
    const ctx: CommandContext = {
      values: values as CommandContext['values'],
      positionals,
      json: values.json === true,
      quiet: values.quiet === true,
      signal: controller.signal,
      stdout: process.stdout,
      dataDir,
      env,
      connection: async () => await (connection ??= connect(dataDir, typeof values.api === 'string' ? values.api : env.IMGSWARM_API)),
      node: async () => (await ctx.connection()).service
    }
    return await command.run(ctx)
  } catch (thrown) {
    // After SIGINT or SIGTERM the interruption is what to report: a stream it tore down may fail
    // first with an error of its own ("Premature close"), which is only its consequence.
    const reason: unknown = controller.signal.reason
    const err = controller.signal.aborted && reason instanceof InterruptedError ? reason : thrown
    process.stderr.write(`imgswarm ${name}: ${describe(err)}\n`)
    if (env.IMGSWARM_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`)
    // 130: the shell's code for a command ended by SIGINT.
    return err instanceof UsageError ? 2 : err instanceof InterruptedError ? 130 : 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await connection?.then(async c => { await c.service.close() }, () => {})
  }
}

function parseCommandLine (command: Command, args: string[]): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...command.options }, allowPositionals: true, strict: true })
  } catch (err) {
    // Node's own wording for an unknown flag runs to three sentences; the flag is what matters.
    const message = (err as Error).message.split('\n')[0]
    const unknown = /^Unknown option '([^']+)'/.exec(message)
    throw new UsageError(`${unknown != null ? `Unknown option '${unknown[1]}'` : message} (see imgswarm ${command.name} --help)`)
  }
}

function describe (err: unknown): string {
  if (err instanceof ImgswarmError) return err.message
  if (err instanceof Error) return err.message.split('\n')[0]
  return String(err)
}
