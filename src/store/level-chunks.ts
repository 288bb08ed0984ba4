import type { AbstractBatchOperation, AbstractLevel, AbstractSublevel } from 'abstract-level'
import type { CID } from 'multiformats/cid'
import { chunkCidFromDigest, verifyChunk, type VerifiedChunk } from '../chunks/cid.js'
import { ChunkCorruptError, ChunkNotFoundError } from '../errors.js'
import { RwLock } from '../util/rw-lock.js'
import type { AbortOptions, ChunkStore } from './chunk-store.js'
import { mapLevelError, runLevel } from './level-errors.js'

export type Db = AbstractLevel<string | Uint8Array, any, any>
export type BatchOp = AbstractBatchOperation<Db, any, any>
type Sub<K, V> = AbstractSublevel<Db, any, K, V>

export type ChunkHealth = 'ok' | 'missing' | 'corrupt'

/** Bytes of a log key: an 8-byte big-endian sequence number, then the chunk's 32-byte digest. */
const KEY_BYTES = 40
/** Bytes of an index value: the sequence number, then the chunk's length (4 bytes, big-endian). */
const ENTRY_BYTES = 12
/** An index value not yet known (never written: it is set before the entry leaves {@link LevelChunks.append}). */
const NO_ENTRY = new Uint8Array(0)

/** Checks the space a write of `bytes` needs, throwing StoreFullError when it is not there. */
export type SpaceCheck = (bytes: number, what: string) => Promise<void>

/**
 * A durable flag in the catalog saying that the chunk log may hold bytes no index entry names: set
 * before a session's first log write, cleared when the session ends with every log write indexed.
 * Found set on open, the last session was cut short (a crash, a kill) and `gc` must sweep the log.
 */
export interface UnsweptMark {
  isSet: () => Promise<boolean>
  set: () => Promise<void>
  clear: () => Promise<void>
}

/**
 * Chunk bytes in write order. The bytes live in a LevelDB of their own (the chunk log), keyed by an
 * insertion counter followed by the digest, so that new tables never overlap old ones and LevelDB moves
 * them down its levels without rewriting them (random digest keys made it rewrite every table at
 * every compaction: 8-14x disk writes). The digest -> (sequence, length) index lives in the catalog
 * database beside the manifests and records, so an image's record and the index entries of its last
 * chunks commit in one batch there. In one database, the index's random keys would make every table
 * span the log's whole key range again (3.0x disk writes against 2.0x, docs/benchmarks.md).
 *
 * Order of writes, so that no index entry ever names bytes that are not there: bytes first, then the
 * index. A crash in between leaves bytes that no index entry names; {@link sweepOrphans} removes them.
 * Before the catalog makes anything durable ({@link commit}), the log is synced, and index writes wait
 * while that happens, so a durable index entry never names bytes lost to a power cut either.
 */
export class LevelChunks implements ChunkStore {
  private readonly log: Db
  private readonly catalog: Db
  private readonly index: Sub<Uint8Array, Uint8Array>
  private readonly where: string
  private readonly checkSpace: SpaceCheck
  private nextSeq: bigint = 0n
  /**
   * Chunks written to the log whose index entries are not written yet, by key: kept by sweeps, and
   * waited for by another writer of the same chunk (so that a write returns only once
   * every chunk it was given is stored).
   */
  private readonly pending = new Map<string, { done: Promise<void>, settle: () => void }>()
  /** Shared by index writes, held alone while the log syncs and the catalog commits. */
  private readonly syncGate = new RwLock()
  private readonly unswept: UnsweptMark
  /** The mark was found set on open: a session before this one may have left unnamed bytes. */
  private inherited = false
  /** The mark is set for this session (the promise of setting it, shared by concurrent writers). */
  private marking: Promise<void> | undefined
  /** Log writes of this session whose index entries were not written (failures, or never committed). */
  private unindexed = 0
  /** {@link unindexed} when the last full sweep started: what it may not have seen is above. */
  private sweptUpTo = 0

  /**
   * Most bytes in one log batch. A batch larger than the write buffer makes a memtable, and then a
   * level-0 table, of its own size, and every table read back is mapped into memory: peers deliver
   * 4 MiB batches, which made the receiver's tables (and its resident size) 2.5x the buffer.
   */
  private readonly logBatchBytes: number
  /** The last log write queued: writes go one after another (see {@link writeLog}). */
  private logTurn: Promise<void> = Promise.resolve()

  constructor (log: Db, catalog: Db, index: Sub<Uint8Array, Uint8Array>, where: string, checkSpace: SpaceCheck, unswept: UnsweptMark, logBatchBytes = 512 * 1024) {
    this.logBatchBytes = logBatchBytes
    this.log = log
    this.catalog = catalog
    this.index = index
    this.where = where
    this.checkSpace = checkSpace
    this.unswept = unswept
  }

  /** Starts the counter after the last key in the log, and reads whether the last session ended cleanly. */
  async init (): Promise<void> {
    await this.run('cannot open the chunk log', async () => {
      for await (const key of this.log.keys({ reverse: true, limit: 1 })) {
        if ((key as Uint8Array).length === KEY_BYTES) this.nextSeq = Buffer.from(key as Uint8Array).readBigUInt64BE(0) + 1n
      }
      this.inherited = await this.unswept.isSet()
    })
  }

  /**
   * Whether the log may hold bytes that no index entry names, so that `gc` has to read the whole log
   * ({@link sweepOrphans}): after a session cut short, or a log write of this one left unindexed.
   * Otherwise a gc deletes by the index alone and does not read gigabytes of chunk bytes for nothing.
   */
  needsSweep (): boolean {
    return this.inherited || this.unindexed > this.sweptUpTo
  }

  /**
   * Ends the session: clears the durable mark when every log write of this session was indexed (or
   * swept) and nothing is in flight. Otherwise it stays, and the next session's gc sweeps.
   */
  async release (): Promise<void> {
    if (this.marking == null || this.needsSweep() || this.pending.size > 0) return
    await this.marking
    await this.unswept.clear()
  }

  /** Sets the durable mark before the first log write of this session (later writes find it set). */
  private async markUnswept (): Promise<void> {
    this.marking ??= this.unswept.set()
    try {
      await this.marking
    } catch (err) {
      this.marking = undefined
      throw err
    }
  }

  private async run<T> (what: string, fn: () => Promise<T>, options?: AbortOptions): Promise<T> {
    return await runLevel(what, this.where, fn, options)
  }

  cidOf (digest: Uint8Array): CID {
    return chunkCidFromDigest(digest)
  }

  async has (digest: Uint8Array, options?: AbortOptions): Promise<boolean> {
    return (await this.hasMany([digest], options))[0]
  }

  async hasMany (digests: Uint8Array[], options?: AbortOptions): Promise<boolean[]> {
    if (digests.length === 0) return []
    // Chunks still being written are not stored yet: a reader told otherwise would not find them.
    return await this.run('cannot look up chunks', async () => await this.index.hasMany(digests), options)
  }

  async get (digest: Uint8Array, options?: AbortOptions): Promise<VerifiedChunk> {
    return (await this.getMany([digest], options))[0]
  }

  async getMany (digests: Uint8Array[], options?: AbortOptions): Promise<VerifiedChunk[]> {
    if (digests.length === 0) return []
    const { values, dangling } = await this.run('cannot read chunks', async () => await this.readRaw(digests), options)
    // Named by the index, gone from the log (LevelDB dropped a damaged log record): forget the name,
    // so that the next import or fetch stores the chunk again instead of taking it as stored.
    if (dangling.length > 0) await this.run('cannot drop lost chunks', async () => { await this.index.batch(dangling.map(d => ({ type: 'del' as const, key: d }))) }).catch(() => {})
    return values.map((bytes, i) => {
      if (bytes === undefined) throw new ChunkNotFoundError(`chunk ${this.cidOf(digests[i]).toString()} is not in the store`)
      return verifyChunk(digests[i], bytes)
    })
  }

  /** Stored bytes by digest, unverified (undefined for a chunk not stored), and the digests the index names whose bytes are gone. */
  private async readRaw (digests: Uint8Array[]): Promise<{ values: Array<Uint8Array | undefined>, dangling: Uint8Array[] }> {
    const entries = await this.index.getMany(digests)
    const keys: Uint8Array[] = []
    const at: number[] = []
    entries.forEach((e, i) => {
      if (e === undefined) return
      keys.push(logKey(seqOf(e), digests[i]))
      at.push(i)
    })
    const out = new Array<Uint8Array | undefined>(digests.length).fill(undefined)
    const dangling: Uint8Array[] = []
    if (keys.length === 0) return { values: out, dangling }
    const values = await this.log.getMany(keys, { fillCache: false } as any)
    values.forEach((v, j) => {
      out[at[j]] = v as Uint8Array | undefined
      if (v === undefined && !this.pending.has(keyOf(digests[at[j]]))) dangling.push(digests[at[j]])
    })
    return { values: out, dangling }
  }

  async putMany (chunks: VerifiedChunk[], options?: AbortOptions): Promise<void> {
    await this.putNew(chunks, options)
  }

  /** {@link putMany}, returning how many chunks and bytes were not stored before. */
  async putNew (chunks: VerifiedChunk[], options?: AbortOptions): Promise<{ chunks: number, bytes: number }> {
    const stored = { chunks: 0, bytes: 0 }
    for (let todo = chunks; todo.length > 0;) {
      const { ops, elsewhere, waits } = await this.append(todo, options)
      if (ops.length > 0) {
        let indexed = false
        try {
          await this.syncGate.read(async () => {
            await this.run('cannot store chunks', async () => { await this.catalog.batch(ops) }, options)
          })
          indexed = true
        } finally {
          this.settle(ops, indexed)
        }
        stored.chunks += ops.length
        for (const op of ops) stored.bytes += lengthOf((op as { value: Uint8Array }).value)
      }
      // Chunks another writer was storing: once it is done, whatever it failed to store is ours to.
      // Waited for only after our own chunks are settled, so two writers never wait for each other.
      await Promise.all(waits)
      todo = elsewhere
    }
    return stored
  }

  /**
   * Writes the bytes of the chunks not stored yet to the log and returns the index entries that make
   * them stored: the caller writes those to the catalog, then calls {@link settle} whatever the
   * outcome. Chunks that another writer is storing are returned apart (`elsewhere`), with promises
   * that settle when it is done; the caller waits for them after settling its own.
   */
  async append (chunks: VerifiedChunk[], options?: AbortOptions): Promise<{ ops: BatchOp[], elsewhere: VerifiedChunk[], waits: Array<Promise<void>> }> {
    const ops: BatchOp[] = []
    const elsewhere: VerifiedChunk[] = []
    const waits: Array<Promise<void>> = []
    if (chunks.length === 0) return { ops, elsewhere, waits }
    const present = await this.hasMany(chunks.map(c => c.digest), options)
    // From here to the pending marks, no await: two writers of the same chunk cannot both pass.
    const fresh: Array<{ chunk: VerifiedChunk, op: BatchOp & { value: Uint8Array } }> = []
    const mine = new Set<string>()
    let bytes = 0
    chunks.forEach((c, i) => {
      const k = keyOf(c.digest)
      if (mine.has(k)) return
      const other = this.pending.get(k)
      if (other != null) {
        waits.push(other.done)
        elsewhere.push(c)
        return
      }
      if (present[i]) return
      let settle!: () => void
      const done = new Promise<void>(resolve => { settle = resolve })
      this.pending.set(k, { done, settle })
      mine.add(k)
      bytes += c.bytes.length
      // The entry's value (sequence, length) is set when the bytes get their place in the log.
      const op = { type: 'put', sublevel: this.index, key: c.digest, value: NO_ENTRY } as unknown as BatchOp & { value: Uint8Array }
      fresh.push({ chunk: c, op })
      ops.push(op)
    })
    if (fresh.length === 0) return { ops, elsewhere, waits }
    try {
      await this.run('cannot store chunks', async () => { await this.markUnswept() })
      await this.checkSpace(bytes, 'cannot store chunks')
      for (const slice of slices(fresh, f => f.chunk.bytes.length, this.logBatchBytes)) await this.writeLog(slice, options)
    } catch (err) {
      this.settle(ops)
      throw err
    }
    return { ops, elsewhere, waits }
  }

  /**
   * Writes one slice of chunks to the log, one slice at a time across writers, numbering them as it
   * goes: keys then grow in the order LevelDB receives them, so no two level-0 tables overlap and
   * compactions move tables down without rewriting them.
   */
  private async writeLog (slice: Array<{ chunk: VerifiedChunk, op: { value: Uint8Array } }>, options?: AbortOptions): Promise<void> {
    const turn = this.logTurn.then(async () => {
      const writes = slice.map(({ chunk, op }) => {
        const seq = this.nextSeq++
        op.value = indexEntry(seq, chunk.bytes.length)
        return { type: 'put', key: logKey(seq, chunk.digest), value: chunk.bytes } as BatchOp
      })
      await this.run('cannot store chunks', async () => { await this.log.batch(writes) }, options)
    })
    this.logTurn = turn.catch(() => {})
    await turn
  }

  /**
   * Forgets the pending state of chunks whose index entries were written (`indexed`) or will never
   * be; in that case their bytes are in the log unnamed, for the next sweep.
   */
  settle (ops: BatchOp[], indexed = false): void {
    for (const op of ops) {
      if (op.sublevel !== this.index) continue
      if (!indexed) this.unindexed++
      const k = keyOf(op.key as Uint8Array)
      this.pending.get(k)?.settle()
      this.pending.delete(k)
    }
  }

  /**
   * Writes `ops` to the catalog as one durable batch: the log is synced first, and index writes wait
   * meanwhile, so every index entry the batch makes durable names bytes already on the disk.
   */
  async commit (ops: BatchOp[], what: string): Promise<void> {
    let indexed = false
    try {
      await this.syncGate.write(async () => {
        await this.run(what, async () => {
          await this.log.put(SYNC_KEY, new Uint8Array(0), { sync: true, keyEncoding: 'view', valueEncoding: 'view' } as any)
          await this.catalog.batch(ops, { sync: true } as any)
        })
      })
      indexed = true
    } finally {
      this.settle(ops, indexed)
    }
  }

  async deleteMany (digests: Uint8Array[], options?: AbortOptions): Promise<void> {
    if (digests.length === 0) return
    await this.run('cannot delete chunks', async () => {
      const entries = await this.index.getMany(digests)
      const logKeys: BatchOp[] = []
      const gone = new Set<string>()
      entries.forEach((e, i) => {
        if (e === undefined || gone.has(keyOf(digests[i]))) return
        gone.add(keyOf(digests[i]))
        logKeys.push({ type: 'del', key: logKey(seqOf(e), digests[i]), keyEncoding: 'view' } as BatchOp)
      })
      // Index first: a crash in between leaves unnamed bytes (swept later), never a name without bytes.
      if (logKeys.length > 0) await this.markUnswept()
      await this.index.batch(digests.map(d => ({ type: 'del' as const, key: d })))
      if (logKeys.length > 0) {
        try {
          await this.log.batch(logKeys)
        } catch (err) {
          this.unindexed++
          throw err
        }
      }
    }, options)
  }

  /** Every stored chunk's digest, in digest order. */
  async * digests (options?: AbortOptions): AsyncIterable<Uint8Array> {
    try {
      for await (const key of this.index.keys()) {
        options?.signal?.throwIfAborted()
        yield key
      }
    } catch (err) {
      throw mapLevelError(err, 'cannot list chunks', this.where)
    }
  }

  /** Every stored chunk with its place in the log and its length, in digest order. */
  async * entries (options?: AbortOptions): AsyncIterable<{ digest: Uint8Array, seq: bigint, length: number }> {
    try {
      for await (const [digest, e] of this.index.iterator()) {
        options?.signal?.throwIfAborted()
        yield { digest, seq: seqOf(e), length: lengthOf(e) }
      }
    } catch (err) {
      throw mapLevelError(err, 'cannot list chunks', this.where)
    }
  }

  /** The byte length of a stored chunk (from the index, without reading it), or undefined when absent. */
  async rawChunkLength (digest: Uint8Array): Promise<number | undefined> {
    const e = await this.run('cannot read chunk', async () => await this.index.get(digest))
    return e === undefined ? undefined : lengthOf(e)
  }

  /** Number of chunks and bytes held, from the index (a scan of small entries, not of the bytes). */
  async stats (): Promise<{ chunks: number, bytes: number }> {
    let chunks = 0
    let bytes = 0
    for await (const e of this.entries()) {
      chunks++
      bytes += e.length
    }
    return { chunks, bytes }
  }

  /**
   * Deletes bytes in the log that no index entry names: left by a crash between a log write and its
   * index write. Chunks being written now are kept. Reads every key of the log (its values come along
   * in LevelDB's blocks): run by gc, which reads the whole store anyway.
   */
  async sweepOrphans (options?: AbortOptions): Promise<{ chunks: number, bytes: number, seqs: bigint[] }> {
    const from = this.unindexed
    let chunks = 0
    let bytes = 0
    const seqs: bigint[] = []
    let doomed: Uint8Array[] = []
    const sizes = new Map<Uint8Array, number>()
    const flush = async (): Promise<void> => {
      if (doomed.length === 0) return
      const named = await this.index.getMany(doomed.map(k => k.subarray(8)))
      const dels = doomed.filter((k, i) => named[i] === undefined || seqOf(named[i]!) !== Buffer.from(k).readBigUInt64BE(0))
      for (const k of dels) bytes += sizes.get(k) ?? 0
      sizes.clear()
      chunks += dels.length
      for (const k of dels) seqs.push(Buffer.from(k).readBigUInt64BE(0))
      if (dels.length > 0) await this.log.batch(dels.map(key => ({ type: 'del' as const, key, keyEncoding: 'view' }) as BatchOp))
      doomed = []
    }
    await this.run('cannot sweep the chunk log', async () => {
      for await (const [key, value] of this.log.iterator({ keyEncoding: 'view', valueEncoding: 'view', fillCache: false } as any)) {
        options?.signal?.throwIfAborted()
        const k = key as Uint8Array
        if (k.length !== KEY_BYTES || this.pending.has(keyOf(k.subarray(8)))) continue
        doomed.push(k)
        sizes.set(k, (value as Uint8Array).length)
        if (doomed.length >= 256) await flush()
      }
      await flush()
    }, options)
    // Every unnamed byte written before the sweep started is gone; later ones are left for the next.
    this.inherited = false
    this.sweptUpTo = from
    return { chunks, bytes, seqs }
  }

  /**
   * Checks stored chunks without failing on the first bad one: each digest is `ok`, `missing` or
   * `corrupt` (bytes that do not hash right, or that LevelDB itself reports damaged).
   */
  async checkMany (digests: Uint8Array[]): Promise<ChunkHealth[]> {
    let values: Array<Uint8Array | undefined | Error>
    try {
      values = (await this.readRaw(digests)).values
    } catch {
      // A damaged table fails the whole request: ask one by one to find which chunks it holds.
      values = await Promise.all(digests.map(async d => (await this.readRaw([d]).then(r => r.values, (err: Error) => [err]))[0]))
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

  /** The log's key for a chunk at `seq`: the range a compaction after deleting it should cover. */
  static keyAt (seq: bigint): Uint8Array {
    const k = Buffer.alloc(8)
    k.writeBigUInt64BE(seq)
    return k
  }
}

/** A key the log syncs with; shorter than a chunk key, and sorting before them all. */
const SYNC_KEY = Uint8Array.of(0)

export function logKey (seq: bigint, digest: Uint8Array): Uint8Array {
  const k = Buffer.allocUnsafe(KEY_BYTES)
  k.writeBigUInt64BE(seq, 0)
  k.set(digest, 8)
  return k
}

function indexEntry (seq: bigint, length: number): Uint8Array {
  const e = Buffer.allocUnsafe(ENTRY_BYTES)
  e.writeBigUInt64BE(seq, 0)
  e.writeUInt32BE(length, 8)
  return e
}

export function seqOf (entry: Uint8Array): bigint {
  return Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength).readBigUInt64BE(0)
}

function lengthOf (entry: Uint8Array): number {
  return Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength).readUInt32BE(8)
}

function keyOf (digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')
}

/** `items` in order, cut into runs of at most `maxBytes` (an item larger than that is a run alone). */
function slices<T> (items: T[], size: (item: T) => number, maxBytes: number): T[][] {
  const out: T[][] = []
  let run: T[] = []
  let bytes = 0
  for (const item of items) {
    const n = size(item)
    if (run.length > 0 && bytes + n > maxBytes) {
      out.push(run)
      run = []
      bytes = 0
    }
    run.push(item)
    bytes += n
  }
  if (run.length > 0) out.push(run)
  return out
}
