import type { ApiClient } from '../api/client.js'
import type { JobView } from '../node/job-board.js'
import { formatBytes } from '../util/format.js'

/** How often the line is redrawn and the daemon asked for sizes it does not yet know. */
const DRAW_MS = 500

export interface GetProgress {
  /** Bytes written so far of image `i`. */
  update: (i: number, bytes: number) => void
  done: (i: number) => void
  stop: () => void
}

const NONE: GetProgress = { update: () => {}, done: () => {}, stop: () => {} }

/**
 * One line on stderr for all the images a `get` writes: images done, percent, bytes of the total,
 * rate and ETA. Sizes come from the daemon's fetch list (`GET /v1/fetch`) until every one is known.
 * Only on a terminal and without `--quiet`.
 */
export function startGetProgress (client: ApiClient, refs: string[], enabled: boolean): GetProgress {
  if (!enabled || process.stderr.isTTY !== true) return NONE
  const written = refs.map(() => 0)
  const finished = refs.map(() => false)
  const sizes: Array<number | undefined> = refs.map(() => undefined)
  const started = Date.now()
  let asking = false
  const askSizes = async (): Promise<void> => {
    if (asking || sizes.every(s => s != null)) return
    asking = true
    try {
      const jobs = await client.call<JobView[]>('GET', '/v1/fetch')
      refs.forEach((r, i) => {
        const j = jobs.find(j => j.ref === r || j.image === r || (j.image != null && j.image.slice(7).startsWith(r.replace(/^sha256:/, ''))))
        if (j?.size != null) sizes[i] ??= j.size
      })
    } catch {} finally { asking = false }
  }
  const draw = (): void => {
    void askSizes()
    const got = written.reduce((a, b) => a + b, 0)
    const known = sizes.every(s => s != null)
    const total = known ? sizes.reduce<number>((a, b) => a + (b ?? 0), 0) : undefined
    const seconds = Math.max(0.001, (Date.now() - started) / 1000)
    const rate = got / seconds
    const parts = [
      `get: ${finished.filter(Boolean).length} of ${refs.length} done`,
      ...(total != null && total > 0 ? [`${(got / total * 100).toFixed(1)}%`, `${formatBytes(got)} of ${formatBytes(total)}`] : [formatBytes(got)]),
      `${formatBytes(rate)}/s`,
      ...(total != null && rate > 0 ? [`ETA ${Math.max(0, Math.round((total - got) / rate))}s`] : [])
    ]
    process.stderr.write(`\r\x1b[K${parts.join(' · ')}`)
  }
  const timer = setInterval(draw, DRAW_MS)
  return {
    update: (i, bytes) => { written[i] = bytes },
    done: i => { finished[i] = true },
    stop: () => {
      clearInterval(timer)
      process.stderr.write('\r\x1b[K')
    }
  }
}
