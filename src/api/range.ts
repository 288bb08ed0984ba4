/** A satisfiable byte range, inclusive at both ends as in HTTP. */
export interface ByteRange {
  start: number
  end: number
}

/**
 * Parses a `Range` header for an object of `size` bytes. Returns undefined for no header (or one we
 * ignore, as RFC 9110 allows: several ranges, other units), and 'unsatisfiable' for a range past the end.
 */
export function parseRange (header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header == null) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m == null || (m[1] === '' && m[2] === '')) return undefined
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}
