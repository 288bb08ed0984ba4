import { CID } from 'multiformats/cid'
import { InvalidRefError } from '../errors.js'

/** What a user may name an image by. */
export type ImageRef =
  | { kind: 'digest', hex: string }
  | { kind: 'prefix', hex: string }
  | { kind: 'manifest', cid: CID }

/** The shortest hex prefix accepted: 12 digits make an accidental match among a node's images unlikely. */
export const MIN_PREFIX_DIGITS = 12

const HEX = /^[0-9a-f]+$/

/**
 * Parses `sha256:<64 hex>`, a bare hex prefix of at least 12 digits (with or without `sha256:`),
 * or a manifest CID (`bafy…`). Hex is case-insensitive.
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
  if (!s.startsWith('sha256:')) {
    try {
      return { kind: 'manifest', cid: CID.parse(s) }
    } catch {}
  }
  throw new InvalidRefError(`invalid image reference "${text}": expected sha256:<64 hex>, a hex prefix of at least ${MIN_PREFIX_DIGITS} digits, or a manifest CID`)
}

/** `sha256:<hex>`: the form in which images are shown everywhere. */
export function digestRef (hex: string): string {
  return `sha256:${hex}`
}
