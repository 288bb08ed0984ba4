import { UsageError } from '../errors.js'

/** Bits per second of each rate unit that `tc` accepts (`bps` is bytes per second in tc's units). */
const RATE_UNITS: Record<string, number> = {
  '': 1,
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  kibit: 1024,
  mibit: 1024 ** 2,
  gibit: 1024 ** 3,
  tibit: 1024 ** 4,
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
  tbps: 8e12,
  kibps: 8 * 1024,
  mibps: 8 * 1024 ** 2,
  gibps: 8 * 1024 ** 3,
  tibps: 8 * 1024 ** 4
}

/** Microseconds of each time unit that `tc` accepts (a bare number is microseconds). */
const TIME_UNITS: Record<string, number> = {
  '': 1,
  us: 1,
  usec: 1,
  usecs: 1,
  ms: 1e3,
  msec: 1e3,
  msecs: 1e3,
  s: 1e6,
  sec: 1e6,
  secs: 1e6
}

/**
 * A rate in `tc`'s units (`100mbit`, `1gbit`, `12500kbps`; a bare number is bits per second), as
 * bits per second. Refuses anything `tc` would not take, so that a typo fails before anything is made.
 */
export function parseRate (text: string): number {
  const m = /^(\d+(?:\.\d+)?)([a-z]*)$/i.exec(text.trim())
  const unit = m?.[2].toLowerCase()
  if (m == null || unit === undefined || !(unit in RATE_UNITS)) {
    throw new UsageError(`invalid rate "${text}": expected a number and a tc unit, e.g. 100mbit, 1gbit, 500kbit`)
  }
  const bits = Number(m[1]) * RATE_UNITS[unit]
  if (!(bits >= 8000)) throw new UsageError(`rate "${text}" is below 8kbit; tc cannot shape that slowly in a useful way`)
  return bits
}

/** A delay in `tc`'s units (`5ms`, `200us`, `1s`), as microseconds. */
export function parseDelay (text: string): number {
  const m = /^(\d+(?:\.\d+)?)([a-z]*)$/i.exec(text.trim())
  const unit = m?.[2].toLowerCase()
  if (m == null || unit === undefined || !(unit in TIME_UNITS)) {
    throw new UsageError(`invalid delay "${text}": expected a number and a tc unit, e.g. 5ms, 200us`)
  }
  const us = Number(m[1]) * TIME_UNITS[unit]
  if (us > 10e6) throw new UsageError(`delay "${text}" is longer than 10 s`)
  return us
}

/**
 * The token-bucket size for `tbf` at `bitsPerSecond`: what the rate sends in 2 ms, at least 8 KiB.
 * A fixed small bucket (`32kbit`) holds a 100mbit link at ~95 Mbit/s but a 1gbit one at ~550-700;
 * 2 ms of traffic kept both within a few percent of the rate on this kernel (measured with curl
 * between two namespaces, 32 MiB).
 */
export function tbfBurstBytes (bitsPerSecond: number): number {
  return Math.max(8 * 1024, Math.ceil(bitsPerSecond / 8 * 0.002))
}
