import { readFile } from 'node:fs/promises'
import { UsageError } from '../errors.js'

/** A unix group: its name and id. */
export interface UnixGroup {
  name: string
  gid: number
}

interface GroupLine { name: string, gid: number, members: string[] }

async function groupLines (): Promise<GroupLine[]> {
  const text = await readFile('/etc/group', 'utf8').catch(() => '')
  const out: GroupLine[] = []
  for (const line of text.split('\n')) {
    const [name, , gid, members] = line.split(':')
    if (name == null || gid == null || !/^\d+$/.test(gid)) continue
    out.push({ name, gid: Number(gid), members: (members ?? '').split(',').filter(m => m !== '') })
  }
  return out
}

/** The group named by its name or number, from /etc/group; a number not listed there is taken as is. */
export async function lookupGroup (nameOrGid: string): Promise<UnixGroup> {
  const groups = await groupLines()
  const found = groups.find(g => g.name === nameOrGid) ?? (/^\d+$/.test(nameOrGid) ? groups.find(g => g.gid === Number(nameOrGid)) : undefined)
  if (found != null) return { name: found.name, gid: found.gid }
  if (/^\d+$/.test(nameOrGid)) return { name: nameOrGid, gid: Number(nameOrGid) }
  throw new UsageError(`no group "${nameOrGid}" in /etc/group`)
}

/**
 * Whether the user `uid` is in group `gid`: as its primary group (/etc/passwd) or as a listed member
 * (/etc/group). Read afresh each call, so a change of membership takes effect without a restart.
 */
export async function uidInGroup (uid: number, gid: number): Promise<boolean> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '')
  let user: string | undefined
  for (const line of passwd.split('\n')) {
    const f = line.split(':')
    if (f.length < 4 || f[2] !== String(uid)) continue
    if (f[3] === String(gid)) return true
    user = f[0]
    break
  }
  if (user == null) return false
  return (await groupLines()).some(g => g.gid === gid && g.members.includes(user))
}
