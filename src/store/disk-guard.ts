import { statfs } from 'node:fs/promises'
import { StoreFullError } from '../errors.js'
import { formatBytes } from '../util/format.js'
import { dbFiles, type DbFiles } from './db-files.js'

/** The database files are listed again after this many bytes were written (or gc ran), not per batch. */
const RELIST_BYTES = 256 * 1024 * 1024
/** The disk's free space is asked again after this many bytes were written, or this long. */
const RESTAT_BYTES = 8 * 1024 * 1024
const RESTAT_MS = 1000

export interface DiskGuardOptions {
  /** The catalog's and the chunk log's directories. */
  catalogDir: string
  logDir: string
  /** Bytes of one memtable (each database holds up to two). */
  writeBufferSize: number
  /** Target size of table files below level 0. */
  maxFileSize: number
  /** For messages: the data dir. */
  where: string
}

/**
 * Refuses a write that would leave LevelDB too little disk to carry on, which otherwise ends with a
 * store that cannot even be opened until space is freed by hand: on open, LevelDB turns its write-ahead
 * logs into tables before it deletes anything, and a compaction that runs out of space leaves its
 * partial output behind. What must stay free: the logs (as tables), twice the write (log, then table),
 * the memtables being flushed, and room for compactions. Chunk bytes are keyed in write order, so a
 * compaction never rewrites old chunk tables: it moves them down. What compactions may rewrite is the
 * catalog (records, manifests, the chunk index: about 0.2% of the bytes), and the few level-0 tables
 * of the chunk log whose ranges overlap. So the store can fill its disk to within a few write buffers.
 *
 * The directories are listed once per {@link RELIST_BYTES} written; between listings the bytes written
 * since are counted as logs (each is written to a log first). The free space comes from statfs once
 * per {@link RESTAT_BYTES} or {@link RESTAT_MS}, less twice what was written since.
 */
export class DiskGuard {
  private readonly o: DiskGuardOptions
  private listed: { catalog: DbFiles, log: DbFiles } | undefined
  private sinceListing = 0
  private free: { bytes: number, at: number, since: number } | undefined

  constructor (options: DiskGuardOptions) {
    this.o = options
  }

  /** Forgets the last listing, after a change that frees or moves much (gc, compaction, migration). */
  invalidate (): void {
    this.listed = undefined
    this.free = undefined
  }

  async check (incoming: number, what: string): Promise<void> {
    const space = await this.space(incoming)
    if (space != null && space.free < space.needed) {
      throw new StoreFullError(`${what}: no space left on the disk of ${this.o.where} (${formatBytes(space.free)} free, ${formatBytes(space.needed)} needed to write safely); nothing stored before was lost`)
    }
    this.sinceListing += incoming
    if (this.free != null) this.free.since += incoming
  }

  /** Free bytes on the store's disk and what a write of `incoming` bytes needs free; undefined when nobody can tell. */
  async space (incoming: number): Promise<{ free: number, needed: number } | undefined> {
    if (this.listed == null || this.sinceListing >= RELIST_BYTES) {
      const [catalog, log] = await Promise.all([dbFiles(this.o.catalogDir), dbFiles(this.o.logDir)])
      if (catalog == null || log == null) return undefined // LevelDB reports a full disk itself
      this.listed = { catalog, log }
      this.sinceListing = 0
    }
    if (this.free == null || this.free.since >= RESTAT_BYTES || Date.now() - this.free.at > RESTAT_MS) {
      const fs = await statfs(this.o.catalogDir).catch(() => undefined)
      if (fs == null) return undefined
      this.free = { bytes: fs.bavail * fs.bsize, at: Date.now(), since: 0 }
    }
    const { catalog, log } = this.listed
    const logs = catalog.logs + log.logs + this.sinceListing
    const memtables = 4 * this.o.writeBufferSize
    const compaction = catalog.tables + 4 * this.o.writeBufferSize + 8 * this.o.maxFileSize
    // Between two statfs calls, what was written since counts as taken twice (log, then table).
    return { free: this.free.bytes - 2 * this.free.since, needed: logs + 2 * incoming + memtables + compaction }
  }

  /** Bytes of both databases' files, and the free and total bytes of their disk. */
  async usage (): Promise<{ store: number, free: number, total: number } | null> {
    const [catalog, log] = await Promise.all([dbFiles(this.o.catalogDir), dbFiles(this.o.logDir)])
    if (catalog == null || log == null) return null
    return { store: catalog.all + log.all, free: log.free, total: log.total }
  }
}
