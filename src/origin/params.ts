import { InvalidRefError, OriginConfigError } from '../errors.js'
import { isImageHex, type OriginTuning } from './origin.js'

/** How to read one URL parameter. */
export type ParamKind = 'string' | 'number' | 'boolean' | 'list'

/** The URL parameters every built-in backend accepts (see {@link OriginTuning}). */
export const TUNING_PARAMS = {
  timeoutMs: 'number',
  retries: 'number',
  retryDelayMs: 'number',
  maxManifestBytes: 'number'
} as const satisfies Record<keyof OriginTuning, ParamKind>

type ParamValue<K extends ParamKind> = K extends 'number' ? number : K extends 'boolean' ? boolean : K extends 'list' ? string[] : string

/**
 * Reads the URL's query parameters by `spec`, refusing unknown names and malformed values, so that
 * a typo in a configured URL is an error instead of a silently ignored setting.
 */
export function readParams<S extends Record<string, ParamKind>> (url: URL, spec: S): { [K in keyof S]?: ParamValue<S[K]> } {
  const out: Record<string, unknown> = {}
  for (const [name, value] of url.searchParams) {
    const kind = spec[name]
    if (kind === undefined) {
      throw new OriginConfigError(`origin ${redact(url)}: unknown parameter "${name}" (known: ${Object.keys(spec).join(', ')})`)
    }
    if (kind === 'list') {
      out[name] = [...(out[name] as string[] | undefined ?? []), value]
    } else if (kind === 'number') {
      const n = Number(value)
      if (value === '' || !Number.isSafeInteger(n) || n < 0) throw new OriginConfigError(`origin ${redact(url)}: parameter ${name}=${value} is not a non-negative integer`)
      out[name] = n
    } else if (kind === 'boolean') {
      if (!['true', 'false', '1', '0'].includes(value)) throw new OriginConfigError(`origin ${redact(url)}: parameter ${name}=${value} is not true or false`)
      out[name] = value === 'true' || value === '1'
    } else {
      out[name] = value
    }
  }
  return out as { [K in keyof S]?: ParamValue<S[K]> }
}

/** Drops `undefined` values, so that spreading options over URL parameters keeps the parameters. */
export function defined<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** The URL without user, password or query, for messages. */
export function redact (url: URL): string {
  const u = new URL(url.href)
  u.username = ''
  u.password = ''
  u.search = ''
  u.hash = ''
  return u.href
}

/** Refuses anything but 64 lower-case hex digits before it reaches a path or a key. */
export function checkHex (hex: string): void {
  if (typeof hex !== 'string' || !isImageHex(hex)) throw new InvalidRefError(`not a sha256 image digest (64 lower-case hex digits): "${String(hex).slice(0, 80)}"`)
}
