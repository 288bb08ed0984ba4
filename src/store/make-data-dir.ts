import { mkdir, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { StoreIoError } from '../errors.js'

/**
 * `mkdir -p` with a one-line reason. Node's own recursive mkdir never returns for a path under /proc
 * (where mkdir fails with ENOENT under an existing parent) and reports a read-only file system as
 * ENOENT.
 */
export async function makeDataDir (dir: string): Promise<void> {
  const fail = (err: unknown, path: string): StoreIoError => {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'EACCES' || code === 'EPERM'
      ? `permission denied in ${dirname(path)}`
      : code === 'EROFS'
        ? 'read-only file system'
        : code === 'ENOTDIR'
          ? `${dirname(path)} is not a directory`
          : code === 'ENOSPC'
            ? 'no space left on device'
            : code === 'ENOENT' ? `${dirname(path)} does not take new directories` : (err as Error).message
    return new StoreIoError(`cannot create data dir ${dir}: ${why}`, { cause: err })
  }
  const missing: string[] = []
  for (let path = resolve(dir), depth = 0; depth < 4096; depth++) {
    const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined
      throw fail(err, path)
    })
    if (st != null) {
      if (!st.isDirectory()) throw new StoreIoError(`cannot use data dir ${dir}: ${path} is not a directory`)
      break
    }
    missing.push(path)
    if (dirname(path) === path) break
    path = dirname(path)
  }
  for (const path of missing.reverse()) {
    await mkdir(path).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw fail(err, path) })
  }
}
