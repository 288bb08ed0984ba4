import { chmod, chown, mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { makeDataDir } from '../store/make-data-dir.js'

/**
 * Makes the data dir private whatever the umask: the dir 0750 (group: the API group, whose members
 * read the token in it), the database 0700, before anything is stored there. Made here rather than
 * left to LevelDB, which creates its directory with the process's umask. Another user's data dir
 * (a member of the API group running the CLI) is left as its owner set it.
 */
export async function prepareDataDir (dir: string, gid?: number): Promise<void> {
  await makeDataDir(dir)
  if ((await stat(dir)).uid !== process.getuid?.()) return
  await chmod(dir, 0o750)
  if (gid != null) await chown(dir, -1, gid)
  const db = join(dir, 'db')
  await mkdir(db, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err })
  await chmod(db, 0o700)
}
