/**
 * LevelDB settings, chosen by measurement (docs/benchmarks.md, `npm run bench:tuning`). Memory wins
 * over speed where they pull apart: a compute node's memory belongs to its VMs.
 *
 * What the measurements showed: classic-level maps table files into memory and the pages it touches
 * count in the resident size. LevelDB keeps up to 64 table files open (`maxOpenFiles` minus 10; it
 * raises any value below 74 to 74), so mapped tables cost up to 64 × `maxFileSize`, and level-0 tables
 * are as large as the write buffer whatever `maxFileSize` says. With chunks keyed by random digests
 * every compaction rewrites whole levels, so a larger write buffer is faster (fewer, larger level-0
 * merges: disk writes fall from ~8× to ~2.4× the image as it grows from 2 to 64 MiB) but each MiB of it
 * costs ~9 MB of peak RSS. Only the smallest settings keep an import of a 1 GiB image near 200 MB.
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
 * 2 MiB write buffer and 1 MiB table files (LevelDB's smallest): peak RSS ~150–215 MB for import and
 * export of 1 GiB, not growing with image size; imports take ~2.5× the CPU and 5–8× the time they take
 * with 64 MiB buffers (which peak at 740–930 MB). See docs/benchmarks.md for the curve.
 */
export const DEFAULT_TUNING: Readonly<LevelTuning> = Object.freeze({
  writeBufferSize: 2 * 1024 * 1024,
  maxFileSize: 1024 * 1024,
  maxOpenFiles: 74,
  cacheSize: 0,
  blockSize: 64 * 1024,
  compression: false
})
