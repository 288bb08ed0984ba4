const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** 1536 → "1.5 KiB". */
export function formatBytes (n: number): string {
  let v = n
  let u = 0
  while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u++ }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[u]}`
}

/** Left-aligned columns separated by two spaces, like `docker images`. */
export function formatTable (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

/**
 * `String(v)` for error messages about untrusted input, cut to `max` characters. Never throws: a decoded
 * map whose `toString` is not a function (`{ "toString": 1 }` in JSON or CBOR) makes `String` throw a TypeError.
 */
export function describe (v: unknown, max = 80): string {
  let text: string
  try {
    text = String(v)
  } catch {
    text = Array.isArray(v) ? '[a list]' : '[a map]'
  }
  return text.length > max ? `${text.slice(0, max)}…` : text
}
