import { UsageError } from '../errors.js'
import { describe } from '../util/format.js'
import { formatDuration, parseDuration, parseRate, parseSizeLimit, type SizeLimit } from '../util/units.js'

/**
 * How an option's value is carried: `text` is one string on the command line and in its variable
 * (a number may stand for it in the config file), `list` a repeatable flag, a comma-separated
 * variable and a JSON array, `bool` a flag with no value, `1`/`0` (or true/false, yes/no, on/off)
 * in its variable and a JSON boolean.
 */
export type Kind = 'text' | 'list' | 'bool'

/** A unit: how one option's value is read from a flag, a variable or the config file, and shown. */
export interface Unit<T> {
  name: 'string' | 'choice' | 'list' | 'bool' | 'duration' | 'size' | 'rate' | 'share' | 'ms'
  kind: Kind
  /** The placeholder in help and the README (`DURATION`, `RATE`); an option may name its own. */
  metavar: string
  /**
   * Reads one value. `v` is the flag's or variable's text (split into a list, or made a boolean,
   * as the kind says) or the config file's JSON value; `name` says where it came from, for errors.
   */
  read: (v: unknown, name: string) => T
  /** A value as help and the README show it (defaults). */
  show: (v: T) => string
  /** What `metavar` accepts, for the units paragraph of help. */
  explain?: string
}

// Checked before String(v), which throws for a JSON object with a `toString` key.
function scalar (v: unknown): v is string | number {
  return typeof v === 'string' || typeof v === 'number'
}

export const string: Unit<string> = {
  name: 'string',
  kind: 'text',
  metavar: 'TEXT',
  read (v, name) {
    if (typeof v !== 'string') throw new UsageError(`${name} must be a string`)
    return v
  },
  show: v => v
}

/** One of a fixed set of words (the log level). */
export function choice<T extends string> (values: readonly T[]): Unit<T> {
  return {
    name: 'choice',
    kind: 'text',
    metavar: values.join('|'),
    read (v, name) {
      if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw new UsageError(`${name} must be one of ${values.join(', ')}, not "${describe(v)}"`)
      return v as T
    },
    show: v => v
  }
}

export const list: Unit<string[]> = {
  name: 'list',
  kind: 'list',
  metavar: 'TEXT',
  read (v, name) {
    if (!Array.isArray(v) || !v.every(s => typeof s === 'string')) throw new UsageError(`${name} must be a list of strings`)
    return v
  },
  show: v => v.length === 0 ? 'none' : v.join(',')
}

/** A {@link list} that may not be empty: a node with nowhere to listen cannot be reached. */
export const addresses: Unit<string[]> = {
  ...list,
  read (v, name) {
    const items = list.read(v, name)
    if (items.length === 0) throw new UsageError(`${name} must name at least one address`)
    return items
  }
}

export const bool: Unit<boolean> = {
  name: 'bool',
  kind: 'bool',
  metavar: '',
  read (v, name) {
    if (typeof v !== 'boolean') throw new UsageError(`${name} must be true or false`)
    return v
  },
  show: v => v ? 'on' : 'off'
}

/** A variable's text as a boolean: a typo is refused rather than read as "off". */
export function boolFromText (text: string, name: string): boolean {
  if (/^(1|true|yes|on)$/i.test(text)) return true
  if (/^(0|false|no|off)$/i.test(text)) return false
  throw new UsageError(`${name} must be 1 or 0 (true/false, yes/no, on/off), not "${text}"`)
}

const DAY_MS = 86_400_000

/**
 * A duration in milliseconds from `30s`, `5m`, `1h`, `250ms` or a bare number of seconds (text or a
 * JSON number alike), from `minMs` up to a day.
 */
export function duration (minMs: number): Unit<number> {
  return {
    name: 'duration',
    kind: 'text',
    metavar: 'DURATION',
    explain: 'DURATION is 30s, 5m, 1h, 250ms, or a bare number of seconds',
    read (v, name) {
      if (!scalar(v)) throw new UsageError(`${name} must be a duration such as 30s, 5m or 1h (a bare number is seconds)`)
      let ms: number
      try {
        ms = parseDuration(String(v), { zero: true })
      } catch (err) {
        throw new UsageError(`${name}: ${(err as Error).message}`)
      }
      if (ms < minMs || ms > DAY_MS) throw new UsageError(`${name} must be from ${formatDuration(minMs)} to 1d, not "${describe(v)}"`)
      return ms
    },
    show: formatDuration
  }
}

/** Milliseconds as a plain number: the deprecated `_MS` variables and `…Ms` config keys. */
export function millis (minMs: number): Unit<number> {
  return {
    name: 'ms',
    kind: 'text',
    metavar: 'MS',
    read (v, name) {
      const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN
      if (!Number.isFinite(n) || n < minMs || n > DAY_MS) throw new UsageError(`${name} must be from ${minMs} to ${DAY_MS} (ms), not "${describe(v)}"`)
      return Math.round(n)
    },
    show: v => String(v)
  }
}

/** A store cap: bytes with an optional unit (`10GiB`, `500G`, a bare number of bytes) or `40%` of the disk. */
export const sizeLimit: Unit<SizeLimit> = {
  name: 'size',
  kind: 'text',
  metavar: 'SIZE|PCT%',
    explain: 'SIZE is 200GiB, 500G, or a bare number of bytes; PCT% a share of the data dir\'s disk',
  read (v, name) {
    if (!scalar(v)) throw new UsageError(`${name} must be a size such as "10GiB" or "80%", or a number of bytes`)
    try {
      return parseSizeLimit(String(v))
    } catch (err) {
      throw new UsageError(`${name}: ${(err as Error).message}`)
    }
  },
  show: v => 'bytes' in v ? String(v.bytes) : `${v.percent}%`
}

/** Bytes a second: `100MB`, `50MiB`, a bare number of bytes, or bits (`800Mbit`); `/s` may follow. */
export const rate: Unit<number> = {
  name: 'rate',
  kind: 'text',
  metavar: 'RATE',
    explain: 'RATE is bytes a second (100MB, 50MiB, 1G, a bare number of bytes) or bits (800Mbit, 1Gbit); /s may follow',
  read (v, name) {
    if (!scalar(v)) throw new UsageError(`${name} must be a rate such as "100MB" or "1Gbit", or a number of bytes a second`)
    try {
      return parseRate(String(v))
    } catch (err) {
      throw new UsageError(`${name}: ${(err as Error).message}`)
    }
  },
  show: v => String(v)
}

/** A share of the store cap: `0.9`, `90%`, or a JSON number; above 0 and at most 1. */
export const share: Unit<number> = {
  name: 'share',
  kind: 'text',
  metavar: 'SHARE',
    explain: 'SHARE is a share of --max-size: 0.9 or 90%',
  read (v, name) {
    if (!scalar(v)) throw new UsageError(`${name} must be a share of the cap such as 0.9 or 90%`)
    const text = String(v).trim()
    const n = text.endsWith('%') ? Number(text.slice(0, -1)) / 100 : Number(text)
    if (!(n > 0 && n <= 1)) throw new UsageError(`${name} must be a share of the cap above 0 and at most 1 (or 100%), not "${text}"`)
    return n
  },
  show: v => String(v)
}
