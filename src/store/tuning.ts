/**
 * LevelDB settings, chosen by measurement (docs/benchmarks.md, `npm run bench:import`). Memory wins
 * over speed where they pull apart: a compute node's memory belongs to its VMs. classic-level maps
 * table files into memory and those pages count in the resident size, so `maxOpenFiles` is low; up to
 * two write buffers are held at once, so `writeBufferSize` bounds the memory of an import.
 */
export interface LevelTuning {
  writeBufferSize: number
  maxFileSize: number
  maxOpenFiles: number
  cacheSize: number
  blockSize: number
  compression: boolean
}

export const DEFAULT_TUNING: Readonly<LevelTuning> = Object.freeze({
  writeBufferSize: 32 * 1024 * 1024,
  maxFileSize: 32 * 1024 * 1024,
  maxOpenFiles: 32,
  cacheSize: 8 * 1024 * 1024,
  blockSize: 64 * 1024,
  compression: false
})
