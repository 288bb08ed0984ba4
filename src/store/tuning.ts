/**
 * LevelDB settings, chosen by measurement (docs/benchmarks.md, `npm run bench:tuning`). Memory wins
 * over speed where they pull apart: a compute node's memory belongs to its VMs.
 *
 * What the measurements showed: classic-level maps table files into memory and the pages it touches
 * count in the resident size. LevelDB keeps up to 64 table files open (`maxOpenFiles` minus 10; it
 * raises any value below 74 to 74), so mapped tables cost up to 64 × `maxFileSize`, and level-0 tables
 * are as large as the write buffer whatever `maxFileSize` says. (With the format-1 layout, chunks keyed
 * by random digests, every compaction rewrote whole levels, and a larger write buffer bought speed with
 * memory; in write order there is little to buy.)
 */
export interface LevelTuning {
  /** Bytes of the memtable; up to two are held, and each level-0 table file is this large. */
  writeBufferSize: number
  /** Target size of table files below level 0; up to 64 of them are mapped into memory. */
  maxFileSize: number
  /** File descriptors LevelDB may hold: 10 of its own plus its table cache. LevelDB raises values below 74 to 74. */
  maxOpenFiles: number
  /** LRU cache of uncompressed blocks. Chunk reads bypass it (`fillCache: false`) and table files are mapped, so 0 (no cache) measured no slower than 8 or 64 MiB. */
  cacheSize: number
  /** Uncompressed bytes per block; a 64 KiB chunk is one block either way. */
  blockSize: number
  /** Snappy: costs CPU and gains nothing on images that are compressed or random. */
  compression: boolean
}

/**
 * 1 MiB write buffer and 1 MiB table files (LevelDB's smallest). Chunk bytes are keyed in write order
 * (src/store/level-chunks.ts), so compactions move the chunk log's level-0 tables down without
 * rewriting them, and those tables stay as large as the write buffer: with 64 of them mapped, a 2 MiB
 * buffer held ~130 MB of an export's resident size, 1 MiB ~65 MB, at the same import speed within the
 * noise of a shared machine (docs/benchmarks.md). Not growing with image size.
 */
export const DEFAULT_TUNING: Readonly<LevelTuning> = Object.freeze({
  writeBufferSize: 1024 * 1024,
  maxFileSize: 1024 * 1024,
  maxOpenFiles: 74,
  cacheSize: 0,
  blockSize: 64 * 1024,
  compression: false
})
