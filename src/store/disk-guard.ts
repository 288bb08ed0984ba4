import { statfs } from 'node:fs/promises'
import { StoreFullError } from '../errors.js'
import { formatBytes } from '../util/format.js'
import { dbFiles, type DbFiles } from './db-files.js'

/** The database files are listed again after this many bytes were written (or gc ran), not per batch. */
const RELIST_BYTES = 64 * 1024 * 1024

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
 * since are counted as logs (each is written to a log first), and the free space comes from one
 * statfs per write.
 */
export class DiskGuard {
  private readonly o: DiskGuardOptions
  private listed: { catalog: DbFiles, log: DbFiles } | undefined
  private sinceListing = 0

  constructor (options: DiskGuardOptions) {
    this.o = options
  }

  /** Forgets the last listing, after a change that frees or moves much (gc, compaction, migration). */
  invalidate (): void {
    this.listed = undefined
  }

  async check (incoming: number, what: string): Promise<void> {
    const space = await this.space(incoming)
    if (space != null && space.free < space.needed) {
      throw new StoreFullError(`${what}: no space left on the disk of ${this.o.where} (${formatBytes(space.free)} free, ${formatBytes(space.needed)} needed to write safely); nothing stored before was lost`)
    }
    this.sinceListing += incoming
  }

  /** Free bytes on the store's disk and what a write of `incoming` bytes needs free; undefined when nobody can tell. */
  async space (incoming: number): Promise<{ free: number, needed: number } | undefined> {
    if (this.listed == null || this.sinceListing >= RELIST_BYTES) {
      const [catalog, log] = await Promise.all([dbFiles(this.o.catalogDir), dbFiles(this.o.logDir)])
      if (catalog == null || log == null) return undefined // LevelDB reports a full disk itself
      this.listed = { catalog, log }
      this.sinceListing = 0
    }
    const fs = await statfs(this.o.catalogDir).catch(() => undefined)
    if (fs == null) return undefined
    const { catalog, log } = this.listed
    const logs = catalog.logs + log.logs + this.sinceListing
    const memtables = 4 * this.o.writeBufferSize
    const compaction = catalog.tables + 4 * this.o.writeBufferSize + 8 * this.o.maxFileSize
    return { free: fs.bavail * fs.bsize, needed: logs + 2 * incoming + memtables + compaction }
  }

  /** Bytes of both databases' files, and the free and total bytes of their disk. */
  async usage (): Promise<{ store: number, free: number, total: number } | null> {
    const [catalog, log] = await Promise.all([dbFiles(this.o.catalogDir), dbFiles(this.o.logDir)])
    if (catalog == null || log == null) return null
    return { store: catalog.all + log.all, free: log.free, total: log.total }
  }
}
