import type { AbstractSublevel } from 'abstract-level'
import type { Db } from './level-chunks.js'
import { mapLevelError } from './level-errors.js'

/** A Glance image id that names a stored image, with what Glance said the image is. */
export interface GlanceAlias {
  /** The Glance image id (a UUID, lower case). */
  id: string
  /** The image's sha256 (64 hex). */
  hex: string
  /** The Glance endpoint that named it (`http://host:port`). */
  endpoint: string
  size: number
  /** Glance's own hash of the image, as Glance reported it when the bytes were checked against it. */
  osHashAlgo?: string
  osHashValue?: string
  checksum?: string
  /** ISO-8601 time the alias was recorded. */
  recorded: string
}

/**
 * The catalog's table of Glance ids: id -> the sha256 of the image whose bytes matched what Glance
 * says of that id. Its own sublevel, so the other tables' keys are untouched. Only verified aliases
 * are written (the caller checked size and Glance's hash); an alias outlives its image (a later
 * fetch by the same id needs no Glance download to learn the sha256 again).
 */
export class GlanceAliases {
  constructor (private readonly table: AbstractSublevel<Db, any, string, GlanceAlias>, private readonly where: string) {}

  async get (id: string): Promise<GlanceAlias | undefined> {
    try {
      return await this.table.get(id.toLowerCase())
    } catch (err) {
      throw mapLevelError(err, 'cannot read the Glance aliases', this.where)
    }
  }

  async put (alias: GlanceAlias): Promise<void> {
    try {
      await this.table.put(alias.id.toLowerCase(), { ...alias, id: alias.id.toLowerCase() })
    } catch (err) {
      throw mapLevelError(err, 'cannot record the Glance alias', this.where)
    }
  }

  /** Every alias (a node holds few: one per Glance image it fetched). */
  async all (): Promise<GlanceAlias[]> {
    try {
      return await this.table.values().all()
    } catch (err) {
      throw mapLevelError(err, 'cannot read the Glance aliases', this.where)
    }
  }

  /** The ids that name image `hex`. */
  async idsOf (hex: string): Promise<string[]> {
    return (await this.all()).filter(a => a.hex === hex).map(a => a.id)
  }
}
