import type { ParseArgsConfig } from 'node:util'
import type { LocalNode } from '../local-node.js'

/** What every command gets: parsed flags, positionals, output streams, and the node when it needs one. */
export interface CommandContext {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
  json: boolean
  quiet: boolean
  signal: AbortSignal
  stdout: NodeJS.WritableStream
  /** Opens the node's store on first use (so `--help` and bad arguments never touch the data dir). */
  node: () => Promise<LocalNode>
}

export interface Command {
  name: string
  summary: string
  usage: string
  /** Extra lines of help after the usage line. */
  details?: string
  options: NonNullable<ParseArgsConfig['options']>
  /** Returns the process exit code. */
  run: (ctx: CommandContext) => Promise<number>
}
