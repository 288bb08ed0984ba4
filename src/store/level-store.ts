import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbstractSublevel } from 'abstract-level'
import { Level } from 'level'
import { MemoryLevel } from 'memory-level'
import { CID } from 'multiformats/cid'
import type { VerifiedChunk } from '../chunks/cid.js'
import { decodeManifest, encodeManifest, manifestCid, type Manifest } from '../chunks/manifest.js'
import { digestRef, MIN_PREFIX_DIGITS, parseImageNaming, type ImageNaming } from '../chunks/ref.js'
import { AmbiguousRefError, ChunkNotFoundError, ImageNotFoundError, StoreVersionError } from '../errors.js'
import { formatBytes } from '../util/format.js'
import { RwLock } from '../util/rw-lock.js'
import type { AbortOptions, ChunkStore } from './chunk-store.js'
import { DiskGuard } from './disk-guard.js'
import { BootProfiles } from './boot-profiles.js'
import { GlanceAliases, type GlanceAlias } from './glance-aliases.js'
import { hexOf, type ImageRecord } from './image-record.js'
import { leaseExpired, type Lease } from './lease.js'
import { LevelChunks, type BatchOp, type ChunkHealth, type Db, type UnsweptMark } from './level-chunks.js'
import { mapLevelError, runLevel } from './level-errors.js'
import { DEFAULT_TUNING, type LevelTuning } from './tuning.js'
import { makeDataDir } from './make-data-dir.js'
import { FORMAT_1, migrateFormat1, type MigrationProgress } from './migrate-format-1.js'

/**
 * Bumped when the layout of keys or values changes. Version 1 kept chunk bytes in the catalog keyed by
 * digest; version 2 keeps them in a chunk log in write order (src/store/level-chunks.ts). A version-1
 * store is migrated on open; any other version is refused.
 */
export const STORE_FORMAT_VERSION = 2

export type { ChunkHealth }

export interface OpenStoreOptions {
  /** Data dir; the catalog lives in `<dir>/db`, the chunk log in `<dir>/chunks`. Omit for an in-memory store (tests, one-shot tools). */
  dir?: string
  tuning?: Partial<LevelTuning>
  /** Called while a store of an older format is migrated on open. */
  onMigrate?: (progress: MigrationProgress) => void
  /** Stops a migration on open (it resumes on the next open). */
  signal?: AbortSignal
}

type Sub<K, V> = AbstractSublevel<Db, any, K, V>

/** The fields of an image record that its manifest does not give. */
export type CommitFields = Omit<ImageRecord, 'manifest' | 'chunks' | 'size' | 'ref' | 'type' | 'name' | 'format'>

/** The full record of an image: what the caller gives, and what its manifest says. */
function recordOf (manifest: Manifest, encoded: Uint8Array, record: CommitFields): ImageRecord {
  return {
    ...record,
    ref: digestRef(Buffer.from(manifest.digest).toString('hex')),
    size: manifest.size,
    manifest: manifestCid(encoded).toString(),
    chunks: manifest.chunkDigests.length / 32,
    type: manifest.meta.type,
    name: manifest.meta.name,
    format: manifest.meta.format
  }
}

/**
 * What a {@link LevelStore.transaction} may do: the catalog's reads, and the writes that need the record
 * lock (which the transaction holds). Nothing here takes that lock again.
 */
export interface CatalogTransaction {
  resolve: (ref: string | ImageNaming) => Promise<ImageRecord>
  getRecord: (hex: string) => Promise<ImageRecord | undefined>
  getManifest: (record: ImageRecord) => Promise<Manifest>
  leasesOf: (hex: string, options?: { includeExpired?: boolean }) => Promise<Lease[]>
  /** Adds or renews a holder's lease. */
  putLease: (lease: Lease) => Promise<void>
  /** Forgets an image: record, manifest and leases in one batch. Its chunks stay until the next gc. */
  removeImage: (record: ImageRecord) => Promise<void>
}

/** What a garbage collection removed. */
export interface GcResult {
  chunks: number
  bytes: number
  keptImages: number
}

/** At most this many key ranges of the chunk log are compacted after a gc (the closest are merged). */
const MAX_COMPACTED_RANGES = 32
/** Meta key of the chunk log's unswept mark (see UnsweptMark): set while a session may leave unnamed bytes. */
const UNSWEPT_KEY = 'log-unswept'

/**
 * One node's store: chunk bytes in a log in write order (see {@link LevelChunks}), and the catalog:
 * the chunk index, manifests and image records by image digest, leases. Both are LevelDB (or in-memory
 * abstract-level databases with the same code paths). Every change of the catalog that spans keys is
 * one atomic batch.
 */
export class LevelStore implements ChunkStore {
  /**
   * Held shared by imports and exports, exclusively by GC, so GC never sweeps the chunks of an import
   * before its manifest is written, nor of an image `rm` removes while it is exported. A fetch holds
   * it only while it writes its record and looks at which chunks are stored: from then on the record
   * names every chunk it stores.
   */
  readonly lock = new RwLock()
  /** Serialises record writes with the checks that decide them (see {@link exclusively}). */
  private readonly recordMutex = new RwLock()
  readonly dir: string | null
  private readonly db: Db
  private readonly log: Db
  readonly chunkLog: LevelChunks
  private readonly manifests: Sub<string, Uint8Array>
  private readonly images: Sub<string, ImageRecord>
  private readonly meta: Sub<string, string>
  /** Leases by `<image hex><holder>` (the hex is fixed-length, so an image's leases are one range). */
  private readonly leaseKeys: Sub<string, Lease>
  private readonly guard: DiskGuard | undefined
  /** Glance image ids of stored images (see {@link GlanceAliases}). */
  readonly glanceAliases: GlanceAliases
  /** Boot profiles of stored images (see {@link BootProfiles}). */
  readonly bootProfiles: BootProfiles
  /**
   * Bytes of chunks an import writes at once: half the write buffer, since a batch larger than the
   * buffer makes a memtable (and a level-0 table, mapped into memory when read) of its own size.
   */
  readonly writeBatchBytes: number

  private constructor (db: Db, log: Db, dir: string | null, tuning: LevelTuning) {
    this.db = db
    this.log = log
    this.dir = dir
    this.writeBatchBytes = Math.max(64 * 1024, tuning.writeBufferSize / 2)
    this.manifests = db.sublevel<string, Uint8Array>('m', { keyEncoding: 'utf8', valueEncoding: 'view' }) as any
    this.images = db.sublevel<string, ImageRecord>('i', { keyEncoding: 'utf8', valueEncoding: 'json' }) as any
    this.meta = db.sublevel<string, string>('meta', { keyEncoding: 'utf8', valueEncoding: 'utf8' }) as any
    this.leaseKeys = db.sublevel<string, Lease>('l', { keyEncoding: 'utf8', valueEncoding: 'json' }) as any
    this.glanceAliases = new GlanceAliases(db.sublevel<string, GlanceAlias>('g', { keyEncoding: 'utf8', valueEncoding: 'json' }) as any, dir ?? 'memory')
    this.bootProfiles = new BootProfiles(db.sublevel<string, Uint8Array>('p', { keyEncoding: 'utf8', valueEncoding: 'view' }) as any, dir ?? 'memory')
    const index = db.sublevel<Uint8Array, Uint8Array>('x', { keyEncoding: 'view', valueEncoding: 'view' }) as any
    this.guard = dir == null
      ? undefined
      : new DiskGuard({ catalogDir: join(dir, 'db'), logDir: join(dir, 'chunks'), writeBufferSize: tuning.writeBufferSize, maxFileSize: tuning.maxFileSize, where: dir })
    const unswept: UnsweptMark = {
      isSet: async () => await this.meta.get(UNSWEPT_KEY) !== undefined,
      set: async () => { await this.meta.put(UNSWEPT_KEY, new Date().toISOString(), { sync: true } as any) },
      clear: async () => { await this.meta.del(UNSWEPT_KEY, { sync: true } as any) }
    }
    this.chunkLog = new LevelChunks(log, db, index, dir ?? 'memory', async (n, what) => { await this.guard?.check(n, what) }, unswept, this.writeBatchBytes)
  }

  static async open (options: OpenStoreOptions = {}): Promise<LevelStore> {
    const dir = options.dir ?? null
    const tuning: LevelTuning = { ...DEFAULT_TUNING, ...options.tuning }
    let db: Db
    let log: Db
    if (dir == null) {
      db = new MemoryLevel({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as Db
      log = new MemoryLevel({ keyEncoding: 'view', valueEncoding: 'view' }) as unknown as Db
    } else {
      await makeDataDir(dir)
      db = new Level(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view', ...tuning }) as unknown as Db
      log = new Level(join(dir, 'chunks'), { keyEncoding: 'view', valueEncoding: 'view', ...tuning }) as unknown as Db
    }
    const where = dir ?? 'memory'
    try {
      await db.open()
    } catch (err) {
      throw mapLevelError(err, 'cannot open the store', where)
    }
    try {
      await log.open()
    } catch (err) {
      await db.close().catch(() => {})
      throw mapLevelError(err, 'cannot open the store\'s chunk log', where)
    }
    const store = new LevelStore(db, log, dir, tuning)
    try {
      await store.chunkLog.init()
      await store.checkFormat(options)
      await store.noteRecoveryDamage().catch(() => {}) // best effort: a full disk may refuse the note
    } catch (err) {
      await store.close().catch(() => {})
      throw err
    }
    return store
  }

  private get where (): string { return this.dir ?? 'memory' }

  /** The format version a store holds; undefined for an empty database. Throws for a foreign one. */
  private async checkFormat (options: OpenStoreOptions): Promise<void> {
    const found = await this.meta.get('format')
    if (found === undefined) {
      for await (const _ of this.db.keys({ limit: 1 })) {
        throw new StoreVersionError(`${this.where} holds a database that is not an imgswarm store (no format version)`)
      }
      await this.meta.put('format', String(STORE_FORMAT_VERSION))
      return
    }
    if (found === FORMAT_1) {
      await migrateFormat1({ catalog: this.db, meta: this.meta, chunks: this.chunkLog, guard: this.guard, where: this.where, to: String(STORE_FORMAT_VERSION) }, options)
      this.guard?.invalidate()
      return
    }
    if (found !== String(STORE_FORMAT_VERSION)) {
      throw new StoreVersionError(`store in ${this.where} has format version ${found}; this imgswarm reads versions ${FORMAT_1} (migrated on open) and ${STORE_FORMAT_VERSION} (use a matching imgswarm, or a new --data dir)`)
    }
  }

  async close (): Promise<void> {
    // Best effort: a mark left set costs the next gc one read of the log, nothing more.
    if (this.db.status === 'open') await this.chunkLog.release().catch(() => {})
    await Promise.allSettled([this.db.close(), this.log.close()])
  }

  /**
   * LevelDB replays its write-ahead log on open and skips records whose checksums fail, saying so only
   * in its info log (`LOG`). Whatever it skipped is lost — chunks, or a whole image's record — so it
   * is noted in the store, for `verify` to report.
   */
  private async noteRecoveryDamage (): Promise<void> {
    if (this.dir == null) return
    let dropped = 0
    const files = new Set<string>()
    const where = new Set<string>()
    for (const [sub, what] of [['db', 'catalog'], ['chunks', 'chunk bytes']]) {
      const info = await readFile(join(this.dir, sub, 'LOG'), 'utf8').catch(() => '')
      for (const m of info.matchAll(/^\S+ \S+ \(ignoring error\) (\S+?): dropping (\d+) bytes;/gm)) {
        dropped += Number(m[2])
        files.add(m[1].split('/').pop() ?? m[1])
        where.add(what)
      }
    }
    if (dropped === 0) return
    const previous = await this.recoveryDamage()
    const note = `LevelDB dropped ${formatBytes(dropped)} (${[...where].join(' and ')}) of damaged write-ahead log (${[...files].join(', ')}) when the store was opened at ${new Date().toISOString()}`
    await this.meta.put('recovery-damage', previous != null ? `${previous}; ${note}` : note)
  }

  /** What LevelDB dropped while recovering the store since the last {@link clearRecoveryDamage}, if anything. */
  async recoveryDamage (): Promise<string | undefined> {
    return await this.run('cannot read the store metadata', async () => await this.meta.get('recovery-damage'))
  }

  async clearRecoveryDamage (): Promise<void> {
    await this.run('cannot write the store metadata', async () => { await this.meta.del('recovery-damage') })
  }

  private async ensureSpace (incoming: number, what: string): Promise<void> {
    await this.guard?.check(incoming, what)
  }

  /** Bytes of the database's files, and the free and total bytes of its disk; null in memory. */
  async diskUsage (): Promise<{ store: number, free: number, total: number } | null> {
    return await this.guard?.usage() ?? null
  }

  private async run<T> (what: string, fn: () => Promise<T>, options?: AbortOptions): Promise<T> {
    return await runLevel(what, this.where, fn, options)
  }

  // ---- ChunkStore: see LevelChunks ----

  cidOf (digest: Uint8Array): CID { return this.chunkLog.cidOf(digest) }
  async has (digest: Uint8Array, options?: AbortOptions): Promise<boolean> { return await this.chunkLog.has(digest, options) }
  async hasMany (digests: Uint8Array[], options?: AbortOptions): Promise<boolean[]> { return await this.chunkLog.hasMany(digests, options) }
  async get (digest: Uint8Array, options?: AbortOptions): Promise<VerifiedChunk> { return await this.chunkLog.get(digest, options) }
  async getMany (digests: Uint8Array[], options?: AbortOptions): Promise<VerifiedChunk[]> { return await this.chunkLog.getMany(digests, options) }
  async putMany (chunks: VerifiedChunk[], options?: AbortOptions): Promise<void> { await this.chunkLog.putMany(chunks, options) }
  async deleteMany (digests: Uint8Array[], options?: AbortOptions): Promise<void> { await this.chunkLog.deleteMany(digests, options) }
  digests (options?: AbortOptions): AsyncIterable<Uint8Array> { return this.chunkLog.digests(options) }
  async rawChunkLength (digest: Uint8Array): Promise<number | undefined> { return await this.chunkLog.rawChunkLength(digest) }
  async checkMany (digests: Uint8Array[]): Promise<ChunkHealth[]> { return await this.chunkLog.checkMany(digests) }
  /** Bytes of chunk data and number of chunks held (from the chunk index). */
  async chunkStats (): Promise<{ chunks: number, bytes: number }> { return await this.chunkLog.stats() }

  // ---- images ----

  async listImages (options?: AbortOptions): Promise<ImageRecord[]> {
    return await this.run('cannot list images', async () => await this.images.values().all(), options)
  }

  async getRecord (hex: string): Promise<ImageRecord | undefined> {
    return await this.run('cannot read image record', async () => await this.images.get(hex))
  }

  /**
   * The record that a REF names (any form of DESIGN.md's grammar, a unique image name last).
   * Throws ImageNotFoundError, AmbiguousRefError or InvalidRefError.
   */
  async resolve (ref: string | ImageNaming): Promise<ImageRecord> {
    const r = typeof ref === 'string' ? parseImageNaming(ref) : ref
    if (r.kind === 'glance') {
      const alias = await this.glanceAliases.get(r.id)
      if (alias == null) throw new ImageNotFoundError(`no image with Glance id ${r.id} in the store`)
      return await this.resolve({ kind: 'digest', hex: alias.hex })
    }
    if (r.kind === 'digest') {
      const rec = await this.getRecord(r.hex)
      if (rec == null) throw new ImageNotFoundError(`no image ${digestRef(r.hex)} in the store`)
      return rec
    }
    if (r.kind === 'prefix') {
      const found = await this.run('cannot search images', async () =>
        await this.images.values({ gte: r.hex, lt: r.hex + 'g', limit: 2 }).all())
      if (found.length === 0) throw new ImageNotFoundError(`no image matches the prefix ${r.hex}`)
      if (found.length > 1) throw new AmbiguousRefError(`prefix ${r.hex} matches more than one image (${found.map(f => f.ref).join(', ')}); give more digits`)
      return found[0]
    }
    if (r.kind === 'name') {
      const found = (await this.listImages()).filter(rec => rec.name === r.name)
      if (found.length === 1) return found[0]
      // Never a guess: every image of that name is listed, to be named by its digest.
      if (found.length > 1) throw new AmbiguousRefError(`the name ${r.name} matches ${found.length} images (${found.map(f => f.ref).join(', ')}); name one by its sha256`)
      const short = /^[0-9a-f]+$/i.test(r.name) ? ` (a hex prefix needs at least ${MIN_PREFIX_DIGITS} digits)` : ''
      throw new ImageNotFoundError(`no image named ${r.name} in the store${short}`)
    }
    const cid = r.cid.toString()
    for (const rec of await this.listImages()) if (rec.manifest === cid) return rec
    throw new ImageNotFoundError(`no image with manifest ${cid} in the store`)
  }

  /** The image's manifest, checked against the CID its record names. */
  async getManifest (record: ImageRecord): Promise<Manifest> {
    const bytes = await this.run('cannot read manifest', async () => await this.manifests.get(hexOf(record)))
    if (bytes === undefined) throw new ChunkNotFoundError(`the manifest of ${record.ref} is missing from the store`)
    return decodeManifest(bytes, CID.parse(record.manifest))
  }

  /**
   * Stores `lastChunks` (the chunks not yet written), then records an image and its manifest in one
   * atomic, durable batch. The caller has checked that every other chunk is stored and that the digest
   * is right.
   */
  async commitImage (manifest: Manifest, record: CommitFields, lastChunks: VerifiedChunk[] = []): Promise<ImageRecord> {
    const bytes = encodeManifest(manifest)
    const hex = Buffer.from(manifest.digest).toString('hex')
    const full = recordOf(manifest, bytes, record)
    await this.ensureSpace(bytes.length, 'cannot record the image')
    // The last chunks first (a crash before the record leaves them for gc), then the record.
    await this.chunkLog.putNew(lastChunks)
    const ops: BatchOp[] = [
      { type: 'put', sublevel: this.manifests, key: hex, value: bytes } as BatchOp,
      { type: 'put', sublevel: this.images, key: hex, value: full } as BatchOp
    ]
    await this.exclusively(async () => { await this.chunkLog.commit(ops, 'cannot record the image') })
    return full
  }

  /**
   * Records several images and their manifests in one atomic batch (a bundle: all of its images or
   * none). As with {@link commitImage}, the caller has checked the chunks and the digests.
   */
  async commitImages (images: Array<{ manifest: Manifest, record: CommitFields }>): Promise<ImageRecord[]> {
    const ops: BatchOp[] = []
    const full: ImageRecord[] = []
    let bytes = 0
    for (const { manifest, record } of images) {
      const encoded = encodeManifest(manifest)
      const hex = Buffer.from(manifest.digest).toString('hex')
      const rec = recordOf(manifest, encoded, record)
      ops.push({ type: 'put', sublevel: this.manifests, key: hex, value: encoded } as BatchOp)
      ops.push({ type: 'put', sublevel: this.images, key: hex, value: rec } as BatchOp)
      full.push(rec)
      bytes += encoded.length
    }
    if (ops.length === 0) return []
    await this.ensureSpace(bytes, 'cannot record the images')
    await this.exclusively(async () => { await this.chunkLog.commit(ops, 'cannot record the images') })
    return full
  }

  /**
   * Runs `fn` alone among record writes: commits, updates, lease grants, removals and eviction
   * decisions. A check and the write it decides then hold together: a lease cannot be granted between
   * eviction's last look and the removal, nor an update put back a record that was just removed. `fn`
   * gets the catalog's reads and the writes this lock guards, and no method that takes the lock again,
   * so it cannot deadlock on it.
   */
  async transaction<T> (fn: (tx: CatalogTransaction) => Promise<T>): Promise<T> {
    return await this.recordMutex.write(async () => await fn(this.tx))
  }

  private readonly tx: CatalogTransaction = {
    resolve: async ref => await this.resolve(ref),
    getRecord: async hex => await this.getRecord(hex),
    getManifest: async record => await this.getManifest(record),
    leasesOf: async (hex, options) => await this.leasesOf(hex, options),
    putLease: async lease => { await this.putLease(lease) },
    removeImage: async record => { await this.removeImage(record) }
  }

  private async exclusively<T> (fn: () => Promise<T>): Promise<T> {
    return await this.recordMutex.write(fn)
  }

  /** Changes fields of an image record (state, pin, access time…). ImageNotFoundError once it is gone. */
  async updateRecord (ref: string, patch: Partial<Omit<ImageRecord, 'ref'>>): Promise<ImageRecord> {
    return await this.exclusively(async () => {
      const rec = await this.resolve(ref)
      const next = { ...rec, ...patch }
      if (patch.state !== undefined && patch.state !== 'failed') delete next.reason
      if (patch.state === 'available') {
        // The image's chunks must be durable before its record says so.
        await this.chunkLog.commit([{ type: 'put', sublevel: this.images, key: hexOf(rec), value: next } as BatchOp], 'cannot update the image record')
      } else {
        await this.run('cannot update the image record', async () => { await this.images.put(hexOf(rec), next) })
      }
      return next
    })
  }

  /**
   * Counts a read of the image and refreshes its access time, which orders eviction. Bookkeeping: a
   * store that cannot record it (a full disk) has still served the image, so failures are ignored.
   */
  async noteRead (ref: string): Promise<void> {
    await this.exclusively(async () => {
      const rec = await this.resolve(ref)
      await this.run('cannot update the image record', async () => {
        await this.images.put(hexOf(rec), { ...rec, hits: (rec.hits ?? 0) + 1, lastAccess: new Date().toISOString() })
      })
    }).catch(() => {})
  }

  /** Forgets an image (record, manifest, boot profile and leases). Its chunks stay until the next {@link gc}. */
  private async removeImage (record: ImageRecord): Promise<void> {
    const hex = hexOf(record)
    const leases = await this.leasesOf(hex, { includeExpired: true })
    await this.run('cannot remove the image', async () => {
      await this.db.batch([
        { type: 'del', sublevel: this.images, key: hex } as BatchOp,
        { type: 'del', sublevel: this.manifests, key: hex } as BatchOp,
        { type: 'del', sublevel: this.bootProfiles.sublevel, key: hex } as BatchOp,
        ...leases.map(l => ({ type: 'del', sublevel: this.leaseKeys, key: hex + l.holder }) as BatchOp)
      ])
    })
  }

  // ---- leases ----

  /** Adds or renews a holder's lease on a stored image (in a {@link transaction}, with the look that found the image). */
  private async putLease (lease: Lease): Promise<void> {
    await this.run('cannot record the lease', async () => { await this.leaseKeys.put(lease.ref.slice('sha256:'.length) + lease.holder, lease) })
  }

  /** Drops a holder's lease; false when it had none. */
  async deleteLease (hex: string, holder: string): Promise<boolean> {
    return await this.run('cannot drop the lease', async () => {
      const key = hex + holder
      if (await this.leaseKeys.get(key) === undefined) return false
      await this.leaseKeys.del(key)
      return true
    })
  }

  /** The live leases on one image (expired ones lapse: they are not returned). */
  async leasesOf (hex: string, options: { includeExpired?: boolean } = {}): Promise<Lease[]> {
    const all = await this.run('cannot read leases', async () => await this.leaseKeys.values({ gte: hex, lt: hex + '\x7f' }).all())
    return options.includeExpired === true ? all : all.filter(l => !leaseExpired(l))
  }

  /** Every live lease; expired ones are deleted on the way, so they lapse by themselves. */
  async leases (): Promise<Lease[]> {
    const all = await this.run('cannot read leases', async () => await this.leaseKeys.iterator().all())
    const expired = all.filter(([, l]) => leaseExpired(l))
    if (expired.length > 0) {
      await this.run('cannot drop expired leases', async () => { await this.leaseKeys.batch(expired.map(([k]) => ({ type: 'del' as const, key: k }))) }).catch(() => {})
    }
    return all.filter(([, l]) => !leaseExpired(l)).map(([, l]) => l)
  }

  /**
   * Mark and sweep: every chunk that no stored manifest names is deleted, and so are bytes in the
   * chunk log that no index entry names (left by a crash). Runs alone (write lock), so chunks of imports
   * in flight in this process are never swept; other processes cannot hold the store.
   */
  async gc (options?: AbortOptions & { keep?: () => Manifest[] }): Promise<GcResult> {
    return await this.lock.write(async () => {
      const marked = new Set<string>()
      const mark = (m: Manifest): void => {
        const d = m.chunkDigests
        for (let i = 0; i < d.length; i += 32) marked.add(Buffer.from(d.buffer, d.byteOffset + i, 32).toString('latin1'))
      }
      // `keep`: manifests of images not recorded yet whose chunks must stay (admitted fetches).
      for (const m of options?.keep?.() ?? []) mark(m)
      const records = await this.listImages(options)
      for (const rec of records) {
        // A failed image keeps its record (a retry fetches it afresh) but not its chunks.
        if (rec.state === 'failed') continue
        try {
          mark(await this.getManifest(rec))
        } catch {
          // a damaged manifest keeps nothing; verify reports it
        }
      }
      let chunks = 0
      let bytes = 0
      const freedSeqs: bigint[] = []
      let doomed: Uint8Array[] = []
      const flush = async (): Promise<void> => {
        await this.deleteMany(doomed, options)
        chunks += doomed.length
        doomed = []
      }
      for await (const e of this.chunkLog.entries(options)) {
        if (!marked.has(Buffer.from(e.digest.buffer, e.digest.byteOffset, e.digest.byteLength).toString('latin1'))) {
          doomed.push(e.digest)
          bytes += e.length
          freedSeqs.push(e.seq)
          if (doomed.length >= 256) await flush()
        }
      }
      await flush()
      const orphans = this.chunkLog.needsSweep() ? await this.chunkLog.sweepOrphans(options) : { chunks: 0, bytes: 0, seqs: [] }
      chunks += orphans.chunks
      bytes += orphans.bytes
      if (chunks > 0) await this.compactFreed([...freedSeqs, ...orphans.seqs])
      this.guard?.invalidate()
      return { chunks, bytes, keptImages: records.length }
    })
  }

  /**
   * LevelDB frees the disk space of deleted chunks only when it compacts their tables, which otherwise
   * happens at some later write: compact now, so that `gc` gives the space back at once. Chunks are in
   * write order, so an image's chunks are mostly one range of the log: only the tables of the freed
   * ranges are rewritten (what they still hold that is kept), not the whole log.
   */
  private async compactFreed (seqs: bigint[]): Promise<void> {
    const compactRange = (this.log as unknown as { compactRange?: (s: Uint8Array, e: Uint8Array) => Promise<void> }).compactRange
    if (this.log.supports.additionalMethods.compactRange !== true || compactRange == null) return
    const ranges: Array<[bigint, bigint]> = []
    seqs.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    for (const s of seqs) {
      const last = ranges[ranges.length - 1]
      if (last != null && s === last[1] + 1n) last[1] = s
      else ranges.push([s, s])
    }
    // Merge the ranges closest to each other until few are left.
    while (ranges.length > MAX_COMPACTED_RANGES) {
      let best = 0
      for (let i = 1; i < ranges.length - 1; i++) if (ranges[i + 1][0] - ranges[i][1] < ranges[best + 1][0] - ranges[best][1]) best = i
      ranges.splice(best, 2, [ranges[best][0], ranges[best + 1][1]])
    }
    await this.run('cannot compact the store', async () => {
      for (const [a, b] of ranges) await compactRange.call(this.log, LevelChunks.keyAt(a), LevelChunks.keyAt(b + 1n))
      // The chunk index and the catalog are small; their tombstones go too.
      await (this.db as unknown as { compactRange: (s: string, e: string) => Promise<void> }).compactRange('!x!', '!x"')
      // A compaction that fails (a full disk) is reported only to the next write: make one here.
      await this.meta.put('last-gc', new Date().toISOString())
    })
  }
}
