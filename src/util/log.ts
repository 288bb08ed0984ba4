export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const
export type LogLevel = typeof LOG_LEVELS[number]

export type LogFields = Record<string, unknown>

/** Structured logs: one JSON object a line on stderr, `{ time, level, msg, …fields }`. */
export interface Logger {
  error: (msg: string, fields?: LogFields) => void
  warn: (msg: string, fields?: LogFields) => void
  info: (msg: string, fields?: LogFields) => void
  debug: (msg: string, fields?: LogFields) => void
}

export function createLogger (level: LogLevel = 'info', out: NodeJS.WritableStream = process.stderr, base: LogFields = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(level)
  const emit = (l: LogLevel) => (msg: string, fields: LogFields = {}): void => {
    if (LOG_LEVELS.indexOf(l) > threshold) return
    const entry: LogFields = { time: new Date().toISOString(), level: l, msg, ...base }
    for (const [k, v] of Object.entries(fields)) entry[k] = v instanceof Error ? v.message : v
    out.write(JSON.stringify(entry) + '\n')
  }
  return { error: emit('error'), warn: emit('warn'), info: emit('info'), debug: emit('debug') }
}

export const silentLogger: Logger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} }
