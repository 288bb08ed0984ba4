import type { CommandContext } from './command.js'

/** One line of text on the command's stdout. */
export function print (ctx: CommandContext, text: string): void {
  ctx.stdout.write(text + '\n')
}

/** Data for scripts (`--json`), pretty-printed. */
export function printJson (ctx: CommandContext, value: unknown): void {
  ctx.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

/** A string flag's value, if given. */
export function str (ctx: CommandContext, key: string): string | undefined {
  const v = ctx.values[key]
  return typeof v === 'string' ? v : undefined
}

/** A repeatable flag's values, if given. */
export function list (ctx: CommandContext, key: string): string[] | undefined {
  const v = ctx.values[key]
  return Array.isArray(v) ? v : undefined
}
