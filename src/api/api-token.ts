import { randomBytes } from 'node:crypto'
import { open, readFile } from 'node:fs/promises'
import { UsageError } from '../errors.js'

/** The API token's file in the data dir. */
export const API_TOKEN_FILE = 'api.token'

/**
 * The daemon's API token: read from `path`, or made there (32 random bytes, hex) when missing. The file
 * is mode 0640, group `gid` when given, whatever the umask: readable by the members of the API group,
 * who are granted anyway, and by whoever the operator hands it to.
 */
export async function ensureApiToken (path: string, gid?: number): Promise<string> {
  const fresh = randomBytes(32).toString('hex')
  const file = await open(path, 'wx', 0o640).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err
    return undefined
  })
  if (file != null) {
    try {
      await file.writeFile(fresh + '\n')
      await file.sync()
    } finally {
      await file.close()
    }
  }
  const existing = await open(path, 'r')
  try {
    await existing.chmod(0o640)
    if (gid != null) await existing.chown(-1, gid)
    const token = (await existing.readFile('utf8')).trim()
    if (!/^\S{16,}$/.test(token)) throw new UsageError(`API token file ${path} must hold one token of at least 16 characters`)
    return token
  } finally {
    await existing.close()
  }
}

/** The token in `path`, or undefined when the file is missing or this user may not read it. */
export async function readApiToken (path: string): Promise<string | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined)
  const token = text?.trim()
  return token != null && token !== '' ? token : undefined
}
