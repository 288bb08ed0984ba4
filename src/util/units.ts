import { UsageError } from '../errors.js'

/** Bytes of each size unit; SI units are powers of 1000, IEC ones of 1024, as `df` and `du` read them. */
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4
}

/** A size cap: a number of bytes, or a percentage of the total size of the data dir's disk. */
export type SizeLimit = { bytes: number } | { percent: number }

/** `10GiB`, `500G`, `1e9`, `80%`. A typo fails here, before a daemon starts with a wrong cap. */
export function parseSizeLimit (text: string): SizeLimit {
  const t = text.trim()
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t)
  if (pct != null) {
    const percent = Number(pct[1])
    if (!(percent > 0 && percent <= 100)) throw new UsageError(`invalid size "${text}": a percentage must be above 0 and at most 100`)
    return { percent }
  }
  return { bytes: parseSize(text) }
}

/** A byte count with an optional unit (`512MiB`, `10G`, `1e9`). */
export function parseSize (text: string): number {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = m?.[2].toLowerCase()
  if (m == null || unit === undefined || !(unit in SIZE_UNITS)) {
    throw new UsageError(`invalid size "${text}": expected bytes with an optional unit (KiB, MiB, GiB, TiB, or K, M, G, T) or a percentage of the disk (80%)`)
  }
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[unit])
  if (!(bytes > 0) || !Number.isSafeInteger(bytes)) throw new UsageError(`invalid size "${text}": must be a positive number of bytes`)
  return bytes
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * A duration such as `90s`, `30m`, `12h`, `7d` (a bare number is seconds), in milliseconds. Zero is
 * refused unless `zero` allows it (an eviction grace of none is meaningful, a lease of none is not).
 */
export function parseDuration (text: string, options: { zero?: boolean } = {}): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i.exec(text.trim())
  if (m == null) throw new UsageError(`invalid duration "${text}": expected a number and a unit, e.g. 90s, 30m, 12h, 7d`)
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's').toLowerCase()])
  if (!Number.isSafeInteger(ms) || ms < 0 || (ms === 0 && options.zero !== true)) throw new UsageError(`invalid duration "${text}": must be positive`)
  return ms
}

/**
 * A duration as text that {@link parseDuration} reads back: `60s`, `5m`, `1500ms`. The largest
 * unit that counts at least two whole ones, so a minute reads `60s` rather than `1m`.
 */
export function formatDuration (ms: number): string {
  if (ms === 0) return '0s'
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= 2 * DURATION_UNITS[unit] && ms % DURATION_UNITS[unit] === 0) return `${ms / DURATION_UNITS[unit]}${unit}`
  }
  return ms % 100 === 0 && ms > 0 ? `${ms / 1000}s` : `${ms}ms`
}

/** Bits a second per unit, for rates given in bits (`100Mbit`, `1Gbit`): network people's habit. */
const BIT_UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12 }

/**
 * A rate in bytes a second: a size as {@link parseSize} reads it (`100MB`, `50MiB`, `1e8`), or bits
 * with `bit` (`800Mbit`, `1Gbit` = 125 MB/s); an optional `/s` is allowed (`100MB/s`).
 */
export function parseRate (text: string): number {
  const t = text.trim().replace(/\/s$/i, '')
  const bits = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]?bit)$/i.exec(t)
  if (bits != null) {
    const bytes = Math.floor(Number(bits[1]) * BIT_UNITS[bits[2].toLowerCase()] / 8)
    if (!(bytes > 0) || !Number.isSafeInteger(bytes)) throw new UsageError(`invalid rate "${text}": must be positive`)
    return bytes
  }
  try {
    return parseSize(t)
  } catch {
    throw new UsageError(`invalid rate "${text}": expected bytes a second with an optional unit (100MB, 50MiB, 1G) or bits (800Mbit, 1Gbit), optionally followed by /s`)
  }
}
