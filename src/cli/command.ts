import type { ParseArgsConfig } from 'node:util'
import type { ImageService } from '../service.js'
import type { Connection } from './connect.js'

/** What every command gets: parsed flags, positionals, output streams, and the node when it needs one. */
export interface CommandContext {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
  json: boolean
  quiet: boolean
  signal: AbortSignal
  stdout: NodeJS.WritableStream
  /** The data dir (`--data`, `IMGSWARM_DATA`, or the default). */
  dataDir: string
  env: NodeJS.ProcessEnv
  /**
   * The images, reached on first use (so `--help` and bad arguments never touch the data dir): the
   * store opened here, or the daemon that holds it or that `--api` / `IMGSWARM_API` names.
   */
  node: () => Promise<ImageService>
  connection: () => Promise<Connection>
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
