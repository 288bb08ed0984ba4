import { readdir, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'

/** A LevelDB directory's bytes on disk by kind, and the free and total bytes of its disk. */
export interface DbFiles {
  /** Write-ahead logs (`*.log`). */
  logs: number
  /** Table files (`*.ldb`). */
  tables: number
  /** Every file, manifests and info logs included. */
  all: number
  free: number
  total: number
}

/** Lists `dbDir` once; undefined when it cannot be read (then nobody can tell how full the disk is). */
export async function dbFiles (dbDir: string): Promise<DbFiles | undefined> {
  try {
    const fs = await statfs(dbDir)
    const files: DbFiles = { logs: 0, tables: 0, all: 0, free: fs.bavail * fs.bsize, total: fs.blocks * fs.bsize }
    for (const name of await readdir(dbDir)) {
      const size = await stat(join(dbDir, name)).then(s => s.size, () => 0)
      files.all += size
      if (name.endsWith('.log')) files.logs += size
      else if (name.endsWith('.ldb')) files.tables += size
    }
    return files
  } catch {
    return undefined
  }
}
