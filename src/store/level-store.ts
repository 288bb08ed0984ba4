import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbstractBatchOperation, AbstractLevel, AbstractSublevel } from 'abstract-level'
import { Level } from 'level'
import { MemoryLevel } from 'memory-level'
import { CID } from 'multiformats/cid'
import { chunkCidFromDigest, verifyChunk, type VerifiedChunk } from '../chunks/cid.js'
import { decodeManifest, encodeManifest, manifestCid, type Manifest } from '../chunks/manifest.js'
import { digestRef, parseRef, type ImageRef } from '../chunks/ref.js'
import { InUse } from '../cache/in-use.js'
import {
  AmbiguousRefError, ChunkNotFoundError, ChunkCorruptError, ImageNotFoundError, StoreFullError, StoreVersionError
} from '../errors.js'
import { formatBytes } from '../util/format.js'
import { RwLock } from '../util/rw-lock.js'
import type { AbortOptions, ChunkStore } from './chunk-store.js'
import { hexOf, type ImageRecord } from './image-record.js'
import { leaseExpired, type Lease } from './lease.js'
import { mapLevelError } from './level-errors.js'
import { DEFAULT_TUNING, type LevelTuning } from './tuning.js'
import { dbFiles } from './db-files.js'
import { makeDataDir } from './make-data-dir.js'

/** Bumped when the layout of keys or values changes; a store of another version is refused. */
export const STORE_FORMAT_VERSION = 1

export interface OpenStoreOptions {
  /** Data dir; the database lives in `<dir>/db`. Omit for an in-memory store (tests, one-shot tools). */
  dir?: string
  tuning?: Partial<LevelTuning>
}

type Db = AbstractLevel<string | Uint8Array, any, any>
type Sub<K, V> = AbstractSublevel<Db, any, K, V>
type BatchOp = AbstractBatchOperation<Db, any, any>

export type ChunkHealth = 'ok' | 'missing' | 'corrupt'

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

/** What a garbage collection removed. */
export interface GcResult {
  chunks: number
  bytes: number
  keptImages: number
}

/**
 * One node's store: chunk bytes by digest, manifests and image records by image digest, all in one
 * LevelDB (or an in-memory abstract-level database with the same code paths). Every change that spans
 * keys is one atomic batch.
 */
export class LevelStore implements ChunkStore {
  /**
   * Held shared by imports and exports, exclusively by GC, so GC never sweeps the chunks of an import
   * before its manifest is written, nor of an image `rm` removes while it is exported. A fetch holds
   * it only while it writes its record and looks at which chunks are stored: from then on the record
   * names every chunk it stores.
   */
  readonly lock = new RwLock()
  /** Images being read or served in this process: eviction leaves them alone. */
  readonly inUse = new InUse()
  /** Serialises record writes with the checks that decide them (see {@link exclusively}). */
  private readonly recordMutex = new RwLock()
  readonly dir: string | null
  private readonly db: Db
  private readonly chunks: Sub<Uint8Array, Uint8Array>
  private readonly manifests: Sub<string, Uint8Array>
  private readonly images: Sub<string, ImageRecord>
  private readonly meta: Sub<string, string>
  /** Leases by `<image hex><holder>` (the hex is fixed-length, so an image's leases are one range). */
  private readonly leaseKeys: Sub<string, Lease>
  private readonly tuning: LevelTuning

  private constructor (db: Db, dir: string | null, tuning: LevelTuning) {
    this.db = db
    this.dir = dir
    this.tuning = tuning
    this.chunks = db.sublevel<Uint8Array, Uint8Array>('c', { keyEncoding: 'view', valueEncoding: 'view' }) as any
    this.manifests = db.sublevel<string, Uint8Array>('m', { keyEncoding: 'utf8', valueEncoding: 'view' }) as any
    this.images = db.sublevel<string, ImageRecord>('i', { keyEncoding: 'utf8', valueEncoding: 'json' }) as any
    this.meta = db.sublevel<string, string>('meta', { keyEncoding: 'utf8', valueEncoding: 'utf8' }) as any
    this.leaseKeys = db.sublevel<string, Lease>('l', { keyEncoding: 'utf8', valueEncoding: 'json' }) as any
  }

  static async open (options: OpenStoreOptions = {}): Promise<LevelStore> {
    const dir = options.dir ?? null
    const tuning: LevelTuning = { ...DEFAULT_TUNING, ...options.tuning }
    let db: Db
    if (dir == null) {
      db = new MemoryLevel({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as Db
    } else {
      await makeDataDir(dir)
      db = new Level(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view', ...tuning }) as unknown as Db
    }
    const where = dir ?? 'memory'
    try {
      await db.open()
    } catch (err) {
      throw mapLevelError(err, 'cannot open the store', where)
    }
    const store = new LevelStore(db, dir, tuning)
    try {
      await store.checkFormat()
      await store.noteRecoveryDamage().catch(() => {}) // best effort: a full disk may refuse the note
    } catch (err) {
      await db.close().catch(() => {})
      throw err
    }
    return store
  }

  private get where (): string { return this.dir ?? 'memory' }

  private async checkFormat (): Promise<void> {
    const found = await this.meta.get('format')
    if (found === undefined) {
      for await (const _ of this.db.keys({ limit: 1 })) {
        throw new StoreVersionError(`${this.where} holds a database that is not an imgswarm store (no format version)`)
      }
      await this.meta.put('format', String(STORE_FORMAT_VERSION))
      return
    }
    if (found !== String(STORE_FORMAT_VERSION)) {
      throw new StoreVersionError(`store in ${this.where} has format version ${found}; this imgswarm reads version ${STORE_FORMAT_VERSION} (use a matching imgswarm, or a new --data dir)`)
    }
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  /**
   * LevelDB replays its write-ahead log on open and skips records whose checksums fail, saying so only
   * in its info log (`db/LOG`). Whatever it skipped is lost — chunks, or a whole image's record — so
   * it is noted in the store, for `verify` to report.
   */
  private async noteRecoveryDamage (): Promise<void> {
    if (this.dir == null) return
    const info = await readFile(join(this.dir, 'db', 'LOG'), 'utf8').catch(() => '')
    let dropped = 0
    const files = new Set<string>()
    for (const m of info.matchAll(/^\S+ \S+ \(ignoring error\) (\S+?): dropping (\d+) bytes;/gm)) {
      dropped += Number(m[2])
      files.add(m[1].split('/').pop() ?? m[1])
    }
    if (dropped === 0) return
    const previous = await this.recoveryDamage()
    const note = `LevelDB dropped ${formatBytes(dropped)} of damaged write-ahead log (${[...files].join(', ')}) when the store was opened at ${new Date().toISOString()}`
    await this.meta.put('recovery-damage', previous != null ? `${previous}; ${note}` : note)
  }

  /** What LevelDB dropped while recovering the store since the last {@link clearRecoveryDamage}, if anything. */
  async recoveryDamage (): Promise<string | undefined> {
    return await this.run('cannot read the store metadata', async () => await this.meta.get('recovery-damage'))
  }

  async clearRecoveryDamage (): Promise<void> {
    await this.run('cannot write the store metadata', async () => { await this.meta.del('recovery-damage') })
  }

  /**
   * Refuses a write of `incoming` bytes that would leave LevelDB too little disk to carry on, which
   * otherwise ends with a store that cannot even be opened until space is freed by hand: on open,
   * LevelDB turns its write-ahead logs into table files before it deletes anything, and a compaction
   * that runs out of space leaves its partial output behind. What must stay free: the logs (as tables),
   * twice the write (log, then table), one write buffer (a flush), and room for a compaction, which
   * with random chunk keys may rewrite every table: the store can fill at most about half its disk.
   * A store that a full disk stopped this way reopens, and its images stay readable.
   */
  private async ensureSpace (incoming: number, what: string): Promise<void> {
    const space = await this.space(incoming)
    if (space != null && space.free < space.needed) {
      throw new StoreFullError(`${what}: no space left on the disk of ${this.where} (${formatBytes(space.free)} free, ${formatBytes(space.needed)} needed to write safely); nothing stored before was lost`)
    }
  }

  /** Free bytes on the store's disk, and what a write of `incoming` bytes needs free (see {@link ensureSpace}). */
  private async space (incoming: number): Promise<{ free: number, needed: number } | undefined> {
    if (this.dir == null) return undefined
    const files = await dbFiles(join(this.dir, 'db'))
    if (files == null) return undefined // cannot tell: LevelDB reports a full disk itself
    // Chunk keys are random, so every table spans the whole key range and one compaction of a small
    // upper level can rewrite the whole level below it: in the worst case, every table. That much,
    // and the logs turned into tables, must stay free, or a compaction can strand the store.
    const compaction = files.tables + files.logs
    return { free: files.free, needed: files.logs + 2 * incoming + this.tuning.writeBufferSize + compaction }
  }

  /** Bytes of the database's files, and the free and total bytes of its disk; null in memory. */
  async diskUsage (): Promise<{ store: number, free: number, total: number } | null> {
    if (this.dir == null) return null
    const files = await dbFiles(join(this.dir, 'db'))
    return files != null ? { store: files.all, free: files.free, total: files.total } : null
  }

  /** Bytes of table files in each LevelDB level (from its `leveldb.stats`, in whole MiB). */
  private levelBytes (): number[] {
    const db = this.db as unknown as { getProperty?: (p: string) => string }
    if (typeof db.getProperty !== 'function') return []
    const levels: number[] = []
    let stats = ''
    try { stats = db.getProperty('leveldb.stats') } catch {}
    for (const m of stats.matchAll(/^\s*(\d+)\s+(\d+)\s+(\d+)\s/gm)) levels[Number(m[1])] = Number(m[3]) * 1024 * 1024
    return Array.from(levels, v => v ?? 0)
  }

  private async run<T> (what: string, fn: () => Promise<T>, options?: AbortOptions): Promise<T> {
    options?.signal?.throwIfAborted()
    try {
      return await fn()
    } catch (err) {
      throw mapLevelError(err, what, this.where)
    }
  }

  // ---- ChunkStore ----

  cidOf (digest: Uint8Array): CID {
    return chunkCidFromDigest(digest)
  }

  async has (digest: Uint8Array, options?: AbortOptions): Promise<boolean> {
    return (await this.hasMany([digest], options))[0]
  }

  async hasMany (digests: Uint8Array[], options?: AbortOptions): Promise<boolean[]> {
    if (digests.length === 0) return []
    return await this.run('cannot look up chunks', async () => await this.chunks.hasMany(digests), options)
  }

  async get (digest: Uint8Array, options?: AbortOptions): Promise<VerifiedChunk> {
    return (await this.getMany([digest], options))[0]
  }

  async getMany (digests: Uint8Array[], options?: AbortOptions): Promise<VerifiedChunk[]> {
    if (digests.length === 0) return []
    const values = await this.run('cannot read chunks', async () => await this.chunks.getMany(digests, { fillCache: false } as any), options)
    return values.map((bytes, i) => {
      if (bytes === undefined) throw new ChunkNotFoundError(`chunk ${this.cidOf(digests[i]).toString()} is not in the store`)
      return verifyChunk(digests[i], bytes)
    })
  }

  async putMany (chunks: VerifiedChunk[], options?: AbortOptions): Promise<void> {
    if (chunks.length === 0) return
    await this.ensureSpace(chunks.reduce((n, c) => n + c.bytes.length, 0), 'cannot store chunks')
    await this.run('cannot store chunks', async () => {
      await this.chunks.batch(chunks.map(c => ({ type: 'put' as const, key: c.digest, value: c.bytes })))
    }, options)
  }

  async deleteMany (digests: Uint8Array[], options?: AbortOptions): Promise<void> {
    if (digests.length === 0) return
    await this.run('cannot delete chunks', async () => {
      await this.chunks.batch(digests.map(d => ({ type: 'del' as const, key: d })))
    }, options)
  }

  async * digests (options?: AbortOptions): AsyncIterable<Uint8Array> {
    try {
      for await (const key of this.chunks.keys()) {
        options?.signal?.throwIfAborted()
        yield key
      }
    } catch (err) {
      throw mapLevelError(err, 'cannot list chunks', this.where)
    }
  }

  /** The byte length of a stored chunk without verifying it, or undefined when absent. */
  async rawChunkLength (digest: Uint8Array): Promise<number | undefined> {
    const v = await this.run('cannot read chunk', async () => await this.chunks.get(digest, { fillCache: false } as any))
    return v?.length
  }

  // ---- images ----

  async listImages (options?: AbortOptions): Promise<ImageRecord[]> {
    return await this.run('cannot list images', async () => await this.images.values().all(), options)
  }

  async getRecord (hex: string): Promise<ImageRecord | undefined> {
    return await this.run('cannot read image record', async () => await this.images.get(hex))
  }

  /** The record that a REF names. Throws ImageNotFoundError, AmbiguousRefError or InvalidRefError. */
  async resolve (ref: string | ImageRef): Promise<ImageRecord> {
    const r = typeof ref === 'string' ? parseRef(ref) : ref
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
   * Records an image and its manifest in one atomic batch together with `lastChunks` (the chunks not yet
   * written). The caller has checked that every other chunk is stored and that the digest is right.
   */
  async commitImage (manifest: Manifest, record: CommitFields, lastChunks: VerifiedChunk[] = []): Promise<ImageRecord> {
    const bytes = encodeManifest(manifest)
    const hex = Buffer.from(manifest.digest).toString('hex')
    const full = recordOf(manifest, bytes, record)
    const ops: BatchOp[] = lastChunks.map(c => ({ type: 'put', sublevel: this.chunks, key: c.digest, value: c.bytes }) as BatchOp)
    ops.push({ type: 'put', sublevel: this.manifests, key: hex, value: bytes } as BatchOp)
    ops.push({ type: 'put', sublevel: this.images, key: hex, value: full } as BatchOp)
    await this.ensureSpace(lastChunks.reduce((n, c) => n + c.bytes.length, bytes.length), 'cannot record the image')
    await this.exclusively(async () => { await this.run('cannot record the image', async () => { await this.db.batch(ops) }) })
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
    await this.exclusively(async () => { await this.run('cannot record the images', async () => { await this.db.batch(ops) }) })
    return full
  }

  /**
   * Runs `fn` alone among record writes: commits, updates, lease grants, removals and eviction
   * decisions. A check and the write it decides then hold together: a lease cannot be granted between
   * eviction's last look and the removal, nor an update put back a record that was just removed.
   * `fn` must not call a method that takes this itself (updateRecord, noteRead, commitImage).
   */
  async exclusively<T> (fn: () => Promise<T>): Promise<T> {
    return await this.recordMutex.write(fn)
  }

  /** Changes fields of an image record (state, pin, access time…). ImageNotFoundError once it is gone. */
  async updateRecord (ref: string, patch: Partial<Omit<ImageRecord, 'ref'>>): Promise<ImageRecord> {
    return await this.exclusively(async () => {
      const rec = await this.resolve(ref)
      const next = { ...rec, ...patch }
      if (patch.state !== undefined && patch.state !== 'failed') delete next.reason
      await this.run('cannot update the image record', async () => { await this.images.put(hexOf(rec), next) })
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

  /**
   * Forgets an image (record, manifest and leases). Its chunks stay until the next {@link gc}. Run it
   * inside {@link exclusively}, together with the checks that allowed it.
   */
  async removeImage (record: ImageRecord): Promise<void> {
    const hex = hexOf(record)
    const leases = await this.leasesOf(hex, { includeExpired: true })
    await this.run('cannot remove the image', async () => {
      await this.db.batch([
        { type: 'del', sublevel: this.images, key: hex } as BatchOp,
        { type: 'del', sublevel: this.manifests, key: hex } as BatchOp,
        ...leases.map(l => ({ type: 'del', sublevel: this.leaseKeys, key: hex + l.holder }) as BatchOp)
      ])
    })
  }

  // ---- leases ----

  /** Adds or renews a holder's lease on a stored image. */
  async putLease (lease: Lease): Promise<void> {
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
   * Mark and sweep: every chunk that no stored manifest names is deleted. Runs alone (write lock), so
   * chunks of imports in flight in this process are never swept; other processes cannot hold the store.
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
        try {
          mark(await this.getManifest(rec))
        } catch {
          // a damaged manifest keeps nothing; verify reports it
        }
      }
      let chunks = 0
      let bytes = 0
      let doomed: Uint8Array[] = []
      const flush = async (): Promise<void> => {
        for (const d of doomed) bytes += (await this.rawChunkLength(d)) ?? 0
        await this.deleteMany(doomed, options)
        chunks += doomed.length
        doomed = []
      }
      for await (const digest of this.digests(options)) {
        if (!marked.has(Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1'))) {
          doomed.push(digest)
          if (doomed.length >= 256) await flush()
        }
      }
      await flush()
      if (chunks > 0 && await this.worthCompacting(bytes)) await this.compactChunks()
      return { chunks, bytes, keptImages: records.length }
    })
  }

  /**
   * Whether to compact after deleting `freed` bytes of chunks. A compaction rewrites every chunk kept,
   * so it runs only when that is worth it: an eighth or more of the tables is dead, or the disk is too
   * full for another write buffer of chunks (an operator on a full disk runs gc to get space back).
   */
  private async worthCompacting (freed: number): Promise<boolean> {
    const tables = this.levelBytes().reduce((a, b) => a + b, 0)
    if (freed * 8 >= tables) return true
    const space = await this.space(this.tuning.writeBufferSize)
    return space != null && space.free < space.needed
  }

  /**
   * LevelDB frees the disk space of deleted chunks only when it compacts their tables, which otherwise
   * happens at some later write: compact the chunks now, so that `gc` gives the space back at once.
   * It rewrites only what is kept.
   */
  private async compactChunks (): Promise<void> {
    if (this.db.supports.additionalMethods.compactRange !== true) return
    const prefix = (this.chunks as unknown as { prefix: string }).prefix
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)
    await this.run('cannot compact the store', async () => {
      await (this.db as unknown as { compactRange: (s: string, e: string) => Promise<void> }).compactRange(prefix, end)
      // A compaction that fails (a full disk) is reported only to the next write: make one here.
      await this.meta.put('last-gc', new Date().toISOString())
    })
  }

  /** Bytes of chunk data and number of chunks held (a full scan of keys and value sizes). */
  async chunkStats (): Promise<{ chunks: number, bytes: number }> {
    let chunks = 0
    let bytes = 0
    await this.run('cannot scan chunks', async () => {
      for await (const v of this.chunks.values({ fillCache: false } as any)) {
        chunks++
        bytes += v.length
      }
    })
    return { chunks, bytes }
  }

  /**
   * Checks stored chunks without failing on the first bad one: each digest is `ok`, `missing` or
   * `corrupt` (bytes that do not hash right, or that LevelDB itself reports damaged).
   */
  async checkMany (digests: Uint8Array[]): Promise<ChunkHealth[]> {
    let values: Array<Uint8Array | undefined | Error>
    try {
      values = await this.chunks.getMany(digests, { fillCache: false } as any)
    } catch {
      // A damaged table fails the whole request: ask one by one to find which chunks it holds.
      values = await Promise.all(digests.map(async d => await this.chunks.get(d, { fillCache: false } as any).catch((err: Error) => err)))
    }
    return values.map((v, i) => {
      if (v === undefined) return 'missing'
      if (v instanceof Error) return 'corrupt'
      try {
        verifyChunk(digests[i], v)
        return 'ok'
      } catch (err) {
        if (err instanceof ChunkCorruptError) return 'corrupt'
        throw err
      }
    })
  }
}
