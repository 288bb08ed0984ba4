import type { AbstractSublevel } from 'abstract-level'
import { verifyChunk, type VerifiedChunk } from '../chunks/cid.js'
import type { DiskGuard } from './disk-guard.js'
import type { BatchOp, Db, LevelChunks } from './level-chunks.js'
import { runLevel } from './level-errors.js'

/** The format that kept chunk bytes in the catalog, under sublevel `c`, keyed by digest. */
export const FORMAT_1 = '1'

/** Chunks moved per batch: each batch is one atomic step of the migration. */
const BATCH_CHUNKS = 64
/** The moved part of the old chunks is compacted away after this many bytes, so the disk never holds two copies. */
const COMPACT_EVERY = 256 * 1024 * 1024

export interface MigrationProgress {
  /** Chunks and bytes moved by this run. */
  chunks: number
  bytes: number
  /** LevelDB's estimate of the bytes left when this run began; undefined in memory. */
  totalBytes?: number
  /** Chunks whose stored bytes no longer matched their digest: dropped, as `verify` drops them. */
  damaged: number
  done: boolean
}

export interface MigrationTarget {
  catalog: Db
  meta: AbstractSublevel<Db, any, string, string>
  chunks: LevelChunks
  guard: DiskGuard | undefined
  where: string
  /** The format version written when every chunk has moved. */
  to: string
}

/**
 * Moves the chunk bytes of a format-1 store into the chunk log, batch by batch. Each batch is crash-
 * safe: its bytes are written to the log first, then one catalog batch adds their index entries and
 * deletes the old keys, so a chunk is always found in one place or the other (a crash in between
 * leaves bytes in the log that nothing names; gc removes them). Killed half way, the next open goes on
 * with the chunks still in the old place. Records, manifests, leases and pins are not touched: their
 * keys and values are the same in both formats. The version becomes 2 in the last, durable batch.
 */
export async function migrateFormat1 (s: MigrationTarget, options: { onMigrate?: (p: MigrationProgress) => void, signal?: AbortSignal } = {}): Promise<MigrationProgress> {
  const old = s.catalog.sublevel<Uint8Array, Uint8Array>('c', { keyEncoding: 'view', valueEncoding: 'view' })
  const progress: MigrationProgress = { chunks: 0, bytes: 0, damaged: 0, done: false, totalBytes: await estimate(s.catalog) }
  const run = async <T>(what: string, fn: () => Promise<T>): Promise<T> => await runLevel(what, s.where, fn)
  options.onMigrate?.({ ...progress })
  let sinceCompaction = 0
  const it = old.iterator({ fillCache: false } as any)
  try {
    for (;;) {
      options.signal?.throwIfAborted()
      const entries = await run('cannot read the old chunks', async () => await it.nextv(BATCH_CHUNKS))
      if (entries.length === 0) break
      const good: VerifiedChunk[] = []
      for (const [digest, bytes] of entries) {
        try {
          good.push(verifyChunk(digest, bytes))
        } catch {
          progress.damaged++
        }
      }
      // The migration is the store's only writer while it runs: no chunk is being stored elsewhere.
      const { ops } = await s.chunks.append(good)
      let indexed = false
      try {
        for (const [digest] of entries) ops.push({ type: 'del', sublevel: old, key: digest } as BatchOp)
        await run('cannot move chunks to the chunk log', async () => { await s.catalog.batch(ops) })
        indexed = true
      } finally {
        s.chunks.settle(ops, indexed)
      }
      progress.chunks += entries.length
      for (const [, bytes] of entries) {
        progress.bytes += bytes.length
        sinceCompaction += bytes.length
      }
      if (sinceCompaction >= COMPACT_EVERY) {
        await run('cannot compact the old chunks', async () => { await compactOld(s.catalog, entries[entries.length - 1][0]) })
        s.guard?.invalidate()
        sinceCompaction = 0
      }
      options.onMigrate?.({ ...progress })
    }
  } finally {
    await it.close().catch(() => {})
  }
  await s.chunks.commit([{ type: 'put', sublevel: s.meta, key: 'format', value: s.to } as BatchOp], 'cannot record the new store format')
  await run('cannot compact the old chunks', async () => { await compactOld(s.catalog) })
  progress.done = true
  options.onMigrate?.({ ...progress })
  return progress
}

/** Format-1 chunk keys are `!c!` followed by the 32-byte digest. */
const OLD_START = Buffer.from('!c!')
const OLD_END = Buffer.from('!c"')

async function compactOld (catalog: Db, through?: Uint8Array): Promise<void> {
  const db = catalog as unknown as { compactRange?: (s: Uint8Array, e: Uint8Array, o?: object) => Promise<void>, supports: { additionalMethods: Record<string, boolean> } }
  if (db.supports.additionalMethods.compactRange !== true || db.compactRange == null) return
  const end = through == null ? OLD_END : Buffer.concat([OLD_START, through, Buffer.of(0)])
  await db.compactRange(OLD_START, end, { keyEncoding: 'view' })
}

async function estimate (catalog: Db): Promise<number | undefined> {
  const db = catalog as unknown as { approximateSize?: (s: Uint8Array, e: Uint8Array, o?: object) => Promise<number>, supports: { additionalMethods: Record<string, boolean> } }
  if (db.supports.additionalMethods.approximateSize !== true || db.approximateSize == null) return undefined
  return await db.approximateSize(OLD_START, OLD_END, { keyEncoding: 'view' }).catch(() => undefined)
}
