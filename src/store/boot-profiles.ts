import type { AbstractSublevel } from 'abstract-level'
import { checkBootProfile, decodeBootProfile, MAX_PROFILE_ENCODED, type BootProfile } from '../chunks/boot-profile.js'
import type { Manifest } from '../chunks/manifest.js'
import type { Db } from './level-chunks.js'
import { mapLevelError } from './level-errors.js'

/**
 * The catalog's table of boot profiles (see src/chunks/boot-profile.ts): image sha256 -> the encoded
 * profile, beside its manifest. Its own sublevel, so the other tables' keys are untouched. At most
 * one profile an image, of at most MAX_PROFILE_ENCODED bytes; it goes with its image's record.
 */
export class BootProfiles {
  constructor (private readonly table: AbstractSublevel<Db, any, string, Uint8Array>, private readonly where: string) {}

  /** The encoded profile of image `hex` as stored, unchecked (to pass on to a peer or an origin). */
  async raw (hex: string): Promise<Uint8Array | undefined> {
    try {
      return await this.table.get(hex)
    } catch (err) {
      throw mapLevelError(err, 'cannot read the boot profiles', this.where)
    }
  }

  /** The profile of image `hex` checked against `manifest`: only the chunks it has; undefined when none, unreadable, or empty after the check. */
  async load (hex: string, manifest: Manifest): Promise<BootProfile | undefined> {
    const bytes = await this.raw(hex)
    const entries = bytes != null ? decodeBootProfile(bytes) : undefined
    if (bytes == null || entries == null) return undefined
    const p = checkBootProfile(entries, manifest, bytes.length)
    return p.chunks.length > 0 ? p : undefined
  }

  /** Keeps an encoded profile for image `hex` (replacing any); a profile over the bound or not decodable is refused. */
  async put (hex: string, bytes: Uint8Array): Promise<boolean> {
    if (bytes.length > MAX_PROFILE_ENCODED || decodeBootProfile(bytes) == null) return false
    try {
      await this.table.put(hex, bytes)
      return true
    } catch (err) {
      throw mapLevelError(err, 'cannot record the boot profile', this.where)
    }
  }

  /** Drops the profile of image `hex`; false when it had none. */
  async delete (hex: string): Promise<boolean> {
    try {
      if (await this.table.get(hex) === undefined) return false
      await this.table.del(hex)
      return true
    } catch (err) {
      throw mapLevelError(err, 'cannot drop the boot profile', this.where)
    }
  }

  /** For a batch that removes an image: the operation that drops its profile too. */
  get sublevel (): AbstractSublevel<Db, any, string, Uint8Array> {
    return this.table
  }
}

/** What `imgswarm profile show` prints: a stored profile checked against the image's manifest. */
export interface BootProfileSummary {
  ref: string
  /** The manifest CID it was recorded under. */
  manifest: string
  recorded: string
  /** Chunks it names that the image's manifest has, and their bytes. */
  chunks: number
  bytes: number
  /** Bytes of the profile itself as stored. */
  encodedBytes: number
  /** Chunk indices in read order. */
  order: number[]
}
