import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root (tests run from dist/test/…). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const BIN = join(ROOT, 'bin', 'imgswarm')

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `bin/imgswarm` (or another copy of it, `bin`) as a user would, with a time limit; stdin gets `input` when given. */
export async function runCli (args: string[], options: { env?: NodeJS.ProcessEnv, input?: Uint8Array | string, timeoutMs?: number, bin?: string } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(options.bin ?? BIN, args, {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', d => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', d => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
    child.stdin.on('error', () => {})
    child.stdin.end(options.input)
  })
}

/** A fresh temporary directory, removed when the test ends. */
export async function tempDir (t: { teardown: (fn: () => Promise<void> | void) => void }, prefix = 'imgswarm-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}
