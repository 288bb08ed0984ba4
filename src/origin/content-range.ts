/** What a `Content-Range` answer header says: the first byte sent (-1 for an unsatisfied range), and the object's size if known. */
export interface ContentRange {
  start: number
  size?: number
}

/**
 * Parses `bytes START-END/SIZE`, the same with `*` for the size, or `*` for the range (a 416 answer)
 * with the size, from an origin's answer.
 * Undefined for anything else, including numbers past 2^53 and ranges that contradict themselves
 * (END before START, or not inside SIZE): a server that says so cannot be trusted with offsets.
 */
export function parseContentRange (value: string | undefined): ContentRange | undefined {
  const m = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(value?.trim() ?? '')
  if (m === null) return undefined
  const size = m[3] === '*' ? undefined : Number(m[3])
  if (size !== undefined && !Number.isSafeInteger(size)) return undefined
  if (m[1] === undefined) return size === undefined ? undefined : { start: -1, size }
  const start = Number(m[1])
  const end = Number(m[2])
  if (!Number.isSafeInteger(end) || start > end || (size !== undefined && end >= size)) return undefined
  return { start, size }
}
