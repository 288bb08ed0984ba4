import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'

/** Why tests that act as another local user cannot run here, or undefined when they can. */
export function asUserUnavailable (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root, to act as the unprivileged user nobody'
  if (!existsSync('/usr/bin/setpriv')) return 'needs setpriv (util-linux)'
  if (!existsSync('/usr/bin/curl')) return 'needs curl'
  return undefined
}

export interface CurlResult { code: number | null, status: number, body: string }

/**
 * Runs curl as the unprivileged user nobody (group nogroup, no other groups), the way a hostile
 * local user would call the API: `-w` prints the HTTP status after the body.
 */
export async function curlAs (user: 'nobody' | 'root', args: string[]): Promise<CurlResult> {
  const cmd = user === 'root' ? ['curl'] : ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', 'curl']
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd[0], [...cmd.slice(1), '-s', '-w', '\n%{http_code}', '--max-time', '30', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', d => { out += d })
    child.on('error', reject)
    child.on('close', code => {
      const cut = out.lastIndexOf('\n')
      resolve({ code, status: Number(out.slice(cut + 1)), body: out.slice(0, cut) })
    })
  })
}
