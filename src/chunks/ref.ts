import { CID } from 'multiformats/cid'
import { InvalidRefError } from '../errors.js'

/** What a user may name an image by. */
export type ImageRef =
  | { kind: 'digest', hex: string }
  | { kind: 'prefix', hex: string }
  | { kind: 'manifest', cid: CID }
  | { kind: 'glance', id: string }

/**
 * Any form of DESIGN.md's grammar: an {@link ImageRef}, or else an image's name. A name says nothing
 * about content, so only a node's store can resolve it; a fetch needs it resolved first.
 */
export type ImageNaming = ImageRef | { kind: 'name', name: string }

/** The shortest hex prefix accepted: 12 digits make an accidental match among a node's images unlikely. */
export const MIN_PREFIX_DIGITS = 12

const HEX = /^[0-9a-f]+$/
/** A Glance image id: a UUID (with its dashes, so it is never taken for a hex prefix). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Parses `sha256:<64 hex>`, a bare hex prefix of at least 12 digits (with or without `sha256:`),
 * a manifest CID (`bafy…`), or a Glance image id (a UUID, known to a node through its Glance origin).
 * Hex is case-insensitive.
 */
export function parseRef (text: string): ImageRef {
  const s = text.trim()
  if (s === '') throw new InvalidRefError('empty image reference')
  const hex = (s.startsWith('sha256:') ? s.slice(7) : s).toLowerCase()
  if (HEX.test(hex)) {
    if (hex.length === 64) return { kind: 'digest', hex }
    if (hex.length >= MIN_PREFIX_DIGITS && hex.length < 64) return { kind: 'prefix', hex }
    throw new InvalidRefError(`invalid image reference "${text}": a sha256 has 64 hex digits; a prefix needs ${MIN_PREFIX_DIGITS} to 63`)
  }
  if (UUID.test(s)) return { kind: 'glance', id: s.toLowerCase() }
  if (!s.startsWith('sha256:')) {
    try {
      return { kind: 'manifest', cid: CID.parse(s) }
    } catch {}
  }
  throw new InvalidRefError(`invalid image reference "${text}": expected sha256:<64 hex>, a hex prefix of at least ${MIN_PREFIX_DIGITS} digits, a manifest CID or a Glance image id`)
}

/**
 * The whole grammar: what {@link parseRef} accepts, else a unique image name (anything else that
 * does not start with `sha256:`). Short hex such as `abc123` is a name: a prefix needs 12 digits.
 */
export function parseImageNaming (text: string): ImageNaming {
  try {
    return parseRef(text)
  } catch (err) {
    const s = text.trim()
    // Long hex that is no digest nor prefix is a mistyped digest, not a name.
    const mistyped = s.length >= MIN_PREFIX_DIGITS && HEX.test(s.toLowerCase())
    if (!(err instanceof InvalidRefError) || s === '' || s.startsWith('sha256:') || mistyped) throw err
    return { kind: 'name', name: s }
  }
}

/** `sha256:<hex>`: the form in which images are shown everywhere. */
export function digestRef (hex: string): string {
  return `sha256:${hex}`
}
