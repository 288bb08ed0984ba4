import type { ParseArgsConfig } from 'node:util'
import { CONFIG_OPTION, OPTIONS, argOf, defaultTextOf, type AnyOption } from './options.js'

type ParseArgsOptions = NonNullable<ParseArgsConfig['options']>

/** The node's flags for `util.parseArgs`, made from the option table (`--config` included). */
export const NODE_FLAGS: ParseArgsOptions = Object.fromEntries([
  ...OPTIONS.map(o => [o.flag, o.unit.kind === 'bool' ? { type: 'boolean' } : o.unit.kind === 'list' ? { type: 'string', multiple: true } : { type: 'string' }]),
  [CONFIG_OPTION.flag, { type: 'string' }]
])

function flagWithArg (o: AnyOption): string {
  const arg = argOf(o)
  return `--${o.flag}${arg !== '' ? ` ${arg}` : ''}`
}

/** `imgswarm daemon [--listen MULTIADDR]… …`, wrapped under the command's name. */
export function nodeUsage (command: string): string {
  const parts = [...OPTIONS.map(o => `[${flagWithArg(o)}]${o.unit.kind === 'list' ? '…' : ''}`), `[--${CONFIG_OPTION.flag} ${CONFIG_OPTION.arg}]`]
  const lines = [`imgswarm ${command}`]
  for (const part of parts) {
    if (lines[lines.length - 1].length + part.length + 1 > 110) lines.push('      ')
    lines[lines.length - 1] += ` ${part}`
  }
  return lines.join('\n')
}

/** The options part of `daemon --help`: each flag with its variable, config key, default and meaning. */
export function nodeOptionsHelp (): string {
  const entry = (o: AnyOption): string[] => {
    const env = `${o.env}${o.unit.kind === 'list' ? ' (comma-separated)' : o.unit.kind === 'bool' ? '=1' : ''}`
    return [
      `  ${flagWithArg(o)}${o.unit.kind === 'list' ? ' (repeatable)' : ''}`,
      `      ${o.help}`,
      `      ${env}, config key ${o.configKey}; default ${defaultTextOf(o)}`
    ]
  }
  const explained = [...new Set(OPTIONS.map(o => o.unit.explain).filter(e => e != null))]
  const deprecated = OPTIONS.flatMap(o => o.deprecated != null ? [`  ${o.deprecated.env} and the key ${o.deprecated.configKey} take milliseconds: use ${o.env} and ${o.configKey}.`] : [])
  return [
    'Options (each also has an IMGSWARM_* variable and a key in the JSON config file):',
    ...OPTIONS.flatMap(entry),
    `  --${CONFIG_OPTION.flag} ${CONFIG_OPTION.arg}`,
    `      ${CONFIG_OPTION.help}; ${CONFIG_OPTION.env}; default ${CONFIG_OPTION.defaultText}`,
    '',
    'Flags win over variables, variables over the config file, the file over the defaults.',
    'Units are the same for a flag, its variable and its config key (where a JSON number is read as a bare number):',
    ...explained.map(e => `  ${e}.`),
    'Deprecated, still read, with a warning:',
    ...deprecated
  ].join('\n')
}
