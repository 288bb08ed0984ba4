import { createRequire } from 'node:module'
import type cliProgressType from 'cli-progress'
import { formatBytes } from '../util/format.js'

export interface Progress {
  update: (bytes: number) => void
  stop: () => void
}

const NONE: Progress = { update: () => {}, stop: () => {} }

/**
 * A progress bar with rate and ETA on stderr, only when stderr is a terminal and not `--quiet`.
 * With an unknown total (a pipe) it shows bytes and rate only.
 */
export function startProgress (label: string, total: number | undefined, enabled: boolean): Progress {
  if (!enabled || process.stderr.isTTY !== true) return NONE
  // Loaded only when a bar is shown: most runs (scripts, pipes) never draw one.
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof cliProgressType
  const started = Date.now()
  const known = total != null && total > 0
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: known
      ? `${label} {bar} {percentage}% | {done} / {size} | {rate}/s | ETA {eta_formatted}`
      : `${label} {done} | {rate}/s`,
    hideCursor: true,
    clearOnComplete: true,
    etaBuffer: 50,
    fps: 10
  }, cliProgress.Presets.shades_classic)
  const payload = (bytes: number): Record<string, string> => ({
    done: formatBytes(bytes),
    size: formatBytes(total ?? 0),
    rate: formatBytes(bytes / Math.max(0.001, (Date.now() - started) / 1000))
  })
  bar.start(known ? total : 1, 0, payload(0))
  return {
    update: (bytes) => { bar.update(known ? bytes : 0, payload(bytes)) },
    stop: () => { bar.stop() }
  }
}
