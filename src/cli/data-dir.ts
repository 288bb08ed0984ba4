import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * Where the node keeps its store when neither `--data` nor `IMGSWARM_DATA` says: /var/lib/imgswarm for
 * root (a system service), else $XDG_DATA_HOME/imgswarm (~/.local/share/imgswarm).
 */
export function defaultDataDir (env: NodeJS.ProcessEnv = process.env): string {
  if (env.IMGSWARM_DATA != null && env.IMGSWARM_DATA !== '') return env.IMGSWARM_DATA
  if (process.getuid?.() === 0) return '/var/lib/imgswarm'
  const base = env.XDG_DATA_HOME != null && env.XDG_DATA_HOME !== '' ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share')
  return join(base, 'imgswarm')
}
