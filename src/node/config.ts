import { join } from 'node:path'
import { UsageError } from '../errors.js'
import { readConfigFile } from './config-file.js'
import { boolFromText, type Kind } from './option-units.js'
import { OPTIONS, type AnyOption, type NodeConfig } from './options.js'

/** Flag values as `util.parseArgs` gives them, by flag name (`'max-size'`, `config`); others are ignored. */
export type FlagValues = Record<string, string | boolean | string[] | undefined>

export interface LoadConfigOptions {
  /** Gets each one-line warning (a deprecated variable or key); by default a Node.js DeprecationWarning. */
  onWarning?: (message: string) => void
}

/** Every key the config file may hold: the table's, their deprecated spellings, and `data` (read, not used). */
export function configKeys (): string[] {
  return [...OPTIONS.flatMap(o => o.deprecated != null ? [o.configKey, o.deprecated.configKey] : [o.configKey]), 'data']
}

/**
 * The node's config: each option from its flag, else its `IMGSWARM_*` variable, else the config
 * file, else the table's default. The file is `--config FILE`, `IMGSWARM_CONFIG`, or
 * `<data>/config.json` when it exists.
 */
export async function loadConfig (flags: FlagValues, env: NodeJS.ProcessEnv, data: string, options: LoadConfigOptions = {}): Promise<NodeConfig> {
  const warn = options.onWarning ?? (message => { process.emitWarning(message, 'DeprecationWarning') })
  const given = typeof flags.config === 'string' ? flags.config : nonEmpty(env.IMGSWARM_CONFIG)
  const path = given ?? join(data, 'config.json')
  const file = await readConfigFile(path, given != null, configKeys())
  const config: Record<string, unknown> = { data }
  for (const o of OPTIONS) config[o.key] = resolve(o, { flags, env, file, path, warn })
  const c = config as unknown as NodeConfig
  if (c.lowWater >= c.highWater) throw new UsageError(`the low watermark (${c.lowWater}) must be below the high one (${c.highWater})`)
  return c
}

/** A complete config with every default from the table, for programs and tests that start a node. */
export function defaultConfig (data: string): NodeConfig {
  const config: Record<string, unknown> = { data }
  for (const o of OPTIONS) config[o.key] = o.default
  return config as unknown as NodeConfig
}

interface Sources {
  flags: FlagValues
  env: NodeJS.ProcessEnv
  file: Record<string, unknown>
  path: string
  warn: (message: string) => void
}

/** One value, where it came from (for errors), and how to read it. */
interface Candidate { value: unknown, name: string, read: (v: unknown, name: string) => unknown, deprecatedFor?: string }

function resolve (o: AnyOption, s: Sources): unknown {
  const old = o.deprecated
  const candidates: Array<Candidate | undefined> = [
    fromFlag(o, s.flags),
    fromEnv(o.unit.kind, o.env, s.env, o.unit.read),
    old != null ? fromEnv(old.unit.kind, old.env, s.env, old.unit.read, o.env) : undefined,
    fromFile(o.configKey, s, o.unit.read),
    old != null ? fromFile(old.configKey, s, old.unit.read, o.configKey) : undefined
  ]
  const used = candidates.find(c => c !== undefined)
  const value = used !== undefined ? used.read(used.value, used.name) : o.default
  for (const c of candidates) {
    if (c?.deprecatedFor == null) continue
    // The old spelling is still honoured, but the operator hears, in one line, what to write instead.
    const setting = c.name.startsWith('IMGSWARM_') ? `${c.deprecatedFor}=${o.unit.show(value)}` : `"${c.deprecatedFor}": "${o.unit.show(value)}"`
    const instead = c === used ? `use ${setting}` : `ignored, as ${c.deprecatedFor} is set; remove it`
    s.warn(`${c.name} is deprecated (milliseconds): ${instead}, a duration as --${o.flag} takes (30s, 5m, 1h; a bare number is seconds)`)
  }
  return value
}

function fromFlag (o: AnyOption, flags: FlagValues): Candidate | undefined {
  const v = flags[o.flag]
  if (v === undefined || (Array.isArray(v) && v.length === 0)) return undefined
  return { value: v, name: `--${o.flag}`, read: o.unit.read }
}

/** A variable's text as its kind carries it: lists comma-separated, switches as 1/0 and the like. */
function fromEnv (kind: Kind, name: string, env: NodeJS.ProcessEnv, read: Candidate['read'], deprecatedFor?: string): Candidate | undefined {
  const text = nonEmpty(env[name])
  if (text == null) return undefined
  let value: unknown = text
  if (kind === 'list') {
    const items = text.split(',').map(s => s.trim()).filter(s => s !== '')
    if (items.length === 0) return undefined
    value = items
  } else if (kind === 'bool') {
    value = boolFromText(text, name)
  }
  return { value, name, read, deprecatedFor }
}

function fromFile (key: string, s: Sources, read: Candidate['read'], deprecatedFor?: string): Candidate | undefined {
  if (!Object.hasOwn(s.file, key) || s.file[key] == null) return undefined
  return { value: s.file[key], name: `${key} (in ${s.path})`, read, deprecatedFor }
}

function nonEmpty (v: string | undefined): string | undefined {
  return v == null || v === '' ? undefined : v
}
