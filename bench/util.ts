import { createCipheriv, createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'

/** The middle value (the mean of the two middle ones for an even count). */
export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** A Markdown table, so that the output can go into docs/benchmarks.md as it is. */
export function mdTable (header: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map(r => r.map(String))
  const widths = header.map((h, i) => Math.max(h.length, 3, ...cells.map(r => r[i].length)))
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
  return [line(header), `| ${widths.map(w => '-'.repeat(w)).join(' | ')} |`, ...cells.map(line)].join('\n')
}

export const MiB = 1024 * 1024
export const GiB = 1024 * MiB

/**
 * Deterministic pseudo-random bytes: AES-128-CTR over zeros, keyed by `seed`. Fast (GB/s), so a
 * benchmark can make hundreds of MiB of incompressible data that is the same on every run.
 */
export function seededStream (seed: string): (n: number) => Buffer {
  const key = createHash('sha256').update(seed).digest()
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32))
  return (n: number) => cipher.update(Buffer.alloc(n))
}

/** A small deterministic PRNG (mulberry32) for choosing positions and sizes. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** What the results were measured on: for the head of every benchmark's output. */
export function machine (): string {
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown'
  return `${cpus().length} CPUs (${model}), Node ${process.version}, ${new Date().toISOString()}`
}

/** Runs `fn` and returns its wall-clock and CPU (user + system) seconds. */
export function timed<T> (fn: () => T): { value: T, wall: number, cpu: number } {
  const c0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  const value = fn()
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const c = process.cpuUsage(c0)
  return { value, wall, cpu: (c.user + c.system) / 1e6 }
}
