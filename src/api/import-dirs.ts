import { constants } from 'node:fs'
import { open, readlink, realpath, type FileHandle } from 'node:fs/promises'
import { isAbsolute, sep } from 'node:path'
import { ForbiddenError, InputError, UsageError } from '../errors.js'

/**
 * Opens a file that an API caller named for import (`POST /v1/images?path=`), only when it lies inside
 * one of the directories the operator allowed. The check is made on the file actually opened (its
 * path as the kernel reports it for the open descriptor), so a symbolic link or a `..` that leads out,
 * or a path swapped between check and open, is refused. Only regular files are read.
 */
export async function openAllowedFile (path: string, allowed: readonly string[]): Promise<FileHandle> {
  if (allowed.length === 0) throw new ForbiddenError('this daemon imports no files by path (the operator allows directories with --import-dir); send the bytes as the request body instead')
  if (!isAbsolute(path)) throw new UsageError(`?path= must be an absolute path, not "${path}"`)
  let file: FileHandle
  try {
    file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    throw new InputError(`cannot import ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  try {
    const real = await readlink(`/proc/self/fd/${file.fd}`)
    const roots = await Promise.all(allowed.map(async d => await realpath(d).catch(() => null)))
    if (!roots.some(r => r != null && (real === r || real.startsWith(r.endsWith(sep) ? r : r + sep)))) {
      throw new ForbiddenError(`${path} is not inside a directory this daemon imports from (${allowed.join(', ')})`)
    }
    if (!(await file.stat()).isFile()) throw new InputError(`cannot import ${path}: not a regular file`)
    return file
  } catch (err) {
    await file.close()
    throw err
  }
}
