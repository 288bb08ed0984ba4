import { randomBytes } from 'node:crypto'
import type { FetchJob, FetchSource, FetchStatus } from '../fetch/fetch-job.js'
import { silentLogger, type Logger } from '../util/log.js'

/** Finished fetches kept for `GET /v1/fetch`, `imgswarm jobs` and the page; the oldest go first. */
const MAX_RECENT = 100

/** Rates are measured over this many one-second samples. */
const RATE_WINDOW = 5

const SAMPLE_MS = 1000

/** One fetch as the operator follows it: its status, how far along and how fast, per source. */
export interface JobView extends FetchStatus {
  id: string
  /** The image's name, once its record is known. */
  name?: string
  /** Share of the image's bytes obtained, 0–100; absent until the size is known. */
  percent?: number
  /** Bytes a second over the last few seconds, by source. */
  rate: Record<FetchSource, number>
  /** Seconds left at the current rate; absent when nothing is moving or the size is unknown. */
  etaSeconds?: number
  /** Seconds since the fetch began, until it ended. */
  seconds: number
}

interface Tracked {
  id: string
  job: FetchJob
  /** Total bytes by source at each of the last samples, newest last. */
  samples: Array<{ at: number, bytes: Record<FetchSource, number> }>
}

/**
 * Every fetch this node runs, current and recent, with progress and rate. The fetcher tells it of
 * each new job; rates come from one sample a second of the jobs in flight (no timer runs while
 * none is), and each finished fetch is logged once at info (a fetch of an image already held, a
 * hit, at debug).
 */
export class JobBoard {
  private readonly active = new Map<FetchJob, Tracked>()
  private readonly recent: Tracked[] = []
  private readonly log: Logger
  private timer?: NodeJS.Timeout

  constructor (log: Logger = silentLogger) {
    this.log = log
  }

  add (job: FetchJob): void {
    if (this.active.has(job) || job.finished) return
    const tracked: Tracked = { id: randomBytes(6).toString('hex'), job, samples: [] }
    this.active.set(job, tracked)
    job.once('done', () => { this.finish(tracked) })
    this.timer ??= setInterval(() => { this.sample() }, SAMPLE_MS).unref()
  }

  /** Fetches in flight, oldest first. */
  current (): JobView[] {
    return [...this.active.values()].map(t => view(t))
  }

  /** Fetches in flight, then the recent finished ones, newest first. */
  list (): JobView[] {
    return [...this.current(), ...this.recent.map(t => view(t)).reverse()]
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  private sample (): void {
    const at = Date.now()
    for (const t of this.active.values()) {
      t.samples.push({ at, bytes: { ...t.job.status.bytes } })
      if (t.samples.length > RATE_WINDOW + 1) t.samples.shift()
    }
    if (this.active.size === 0) this.stop()
  }

  private finish (t: Tracked): void {
    this.active.delete(t.job)
    this.recent.push(t)
    if (this.recent.length > MAX_RECENT) this.recent.shift()
    const s = t.job.status
    const fields = {
      ref: s.ref,
      image: s.image,
      name: t.job.streaming?.record.name,
      size: s.size,
      state: s.state,
      bytes: s.bytes,
      seconds: Number(secondsOf(s).toFixed(3)),
      ...(s.badChunks > 0 ? { badChunks: s.badChunks } : {}),
      ...(s.error != null ? { error: s.error } : {})
    }
    if (s.state === 'failed') return // the fetcher logs a failure with its reason
    if (s.hit === true) this.log.debug('fetch found the image stored', fields)
    else this.log.info('fetch finished', fields)
  }
}

function secondsOf (s: FetchStatus): number {
  return ((s.finished != null ? Date.parse(s.finished) : Date.now()) - Date.parse(s.started)) / 1000
}

function view (t: Tracked): JobView {
  const s = t.job.status
  const bytes = { ...s.bytes }
  const got = bytes.local + bytes.peer + bytes.origin
  const rate: Record<FetchSource, number> = { local: 0, peer: 0, origin: 0 }
  const first = t.samples[0]
  if (!t.job.finished && first != null) {
    const seconds = (Date.now() - first.at) / 1000
    if (seconds > 0.2) for (const k of ['local', 'peer', 'origin'] as const) rate[k] = Math.max(0, Math.round((bytes[k] - first.bytes[k]) / seconds))
  }
  const moving = rate.peer + rate.origin + rate.local
  const name = t.job.streaming?.record.name
  const out: JobView = { ...s, bytes, id: t.id, ...(name != null && name !== '' ? { name } : {}), rate, seconds: Number(secondsOf(s).toFixed(3)) }
  if (s.size != null && s.size > 0) out.percent = Math.min(100, Math.floor(got / s.size * 1000) / 10)
  if (s.state === 'available') out.percent = 100
  if (!t.job.finished && s.size != null && moving > 0) out.etaSeconds = Math.max(0, Math.round((s.size - got) / moving))
  return out
}
