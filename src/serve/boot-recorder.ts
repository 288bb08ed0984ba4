import { encodeBootProfile, MAX_PROFILE_BYTES, MAX_PROFILE_CHUNKS, profileEntries } from '../chunks/boot-profile.js'
import { chunkCount, type Manifest } from '../chunks/manifest.js'
import type { BootProfiles } from '../store/boot-profiles.js'
import { silentLogger, type Logger } from '../util/log.js'

/** How long after an image's first read its reads are recorded, by default. */
export const DEFAULT_PROFILE_WINDOW_MS = 30_000
/** Images recorded at once at most: more first reads at the same time are not recorded. */
const MAX_SESSIONS = 64

export interface BootRecorderOptions {
  profiles: BootProfiles
  /** How long after the first read reads are recorded; 0 records nothing. */
  windowMs?: number
  log?: Logger
  /** Told of each profile kept (the daemon offers it to peers). */
  onRecorded?: (hex: string, chunks: number) => void
}

interface Session {
  manifest: Manifest
  manifestCid: string
  offsets: Float64Array
  order: number[]
  seen: Set<number>
  bytes: number
  timer: NodeJS.Timeout
  /** Whether the store had a profile already when the session began: then nothing is kept. */
  skip: Promise<boolean>
  /** Set once the recording ends: the write of its profile. */
  finished?: Promise<void>
}

/**
 * Records which chunks of an image are read in the first seconds after its first read (an NBD
 * export, HTTP range reads), in the order first read, and keeps them as the image's boot profile
 * (src/chunks/boot-profile.ts) when the window ends or the bounds are reached. An image that has a
 * profile already is not recorded again (drop it with `imgswarm profile rm` to record anew).
 */
export class BootRecorder {
  private readonly sessions = new Map<string, Session>()
  /** Images recorded in this run: one recording per image per run. */
  private readonly recorded = new Set<string>()
  private readonly windowMs: number
  private readonly log: Logger

  constructor (private readonly o: BootRecorderOptions) {
    this.windowMs = o.windowMs ?? DEFAULT_PROFILE_WINDOW_MS
    this.log = o.log ?? silentLogger
  }

  /** Notes a read of `length` bytes at `offset` of image `hex` under `manifest` (whose CID is `manifestCid`). */
  noteRead (hex: string, manifest: Manifest, manifestCid: string, offset: number, length: number): void {
    if (this.windowMs <= 0 || length <= 0 || this.recorded.has(hex)) return
    let s = this.sessions.get(hex)
    if (s == null) {
      if (this.sessions.size >= MAX_SESSIONS) return
      s = this.begin(hex, manifest, manifestCid)
    }
    if (s.finished != null || s.manifestCid !== manifestCid) return
    const first = chunkAt(s.offsets, offset)
    const last = chunkAt(s.offsets, Math.min(offset + length, manifest.size) - 1)
    for (let i = first; i <= last; i++) {
      if (s.seen.has(i)) continue
      const len = s.offsets[i + 1] - s.offsets[i]
      if (s.order.length >= MAX_PROFILE_CHUNKS || s.bytes + len > MAX_PROFILE_BYTES) {
        void this.finish(hex, s)
        return
      }
      s.seen.add(i)
      s.order.push(i)
      s.bytes += len
    }
  }

  /** Keeps what the recordings running now have so far (at a daemon's stop). */
  async flush (): Promise<void> {
    await Promise.allSettled([...this.sessions].map(async ([hex, s]) => { await this.finish(hex, s) }))
  }

  private begin (hex: string, manifest: Manifest, manifestCid: string): Session {
    const n = chunkCount(manifest)
    const offsets = new Float64Array(n + 1)
    const lengths = new DataView(manifest.chunkLengths.buffer, manifest.chunkLengths.byteOffset, manifest.chunkLengths.byteLength)
    for (let i = 0; i < n; i++) offsets[i + 1] = offsets[i] + lengths.getUint32(i * 4)
    const s: Session = {
      manifest,
      manifestCid,
      offsets,
      order: [],
      seen: new Set(),
      bytes: 0,
      timer: setTimeout(() => { void this.finish(hex, s) }, this.windowMs),
      skip: this.o.profiles.raw(hex).then(p => p != null, () => true)
    }
    s.timer.unref()
    this.sessions.set(hex, s)
    return s
  }

  private async finish (hex: string, s: Session): Promise<void> {
    s.finished ??= this.keep(hex, s)
    await s.finished
  }

  private async keep (hex: string, s: Session): Promise<void> {
    clearTimeout(s.timer)
    this.recorded.add(hex)
    try {
      if (await s.skip || s.order.length === 0) return
      await this.o.profiles.put(hex, encodeBootProfile(profileEntries(s.manifest, s.manifestCid, s.order)))
      this.log.info('boot profile recorded', { image: `sha256:${hex}`, chunks: s.order.length, bytes: s.bytes })
      this.o.onRecorded?.(hex, s.order.length)
    } catch (err) {
      this.log.warn('boot profile not kept', { image: `sha256:${hex}`, err })
    } finally {
      this.sessions.delete(hex)
    }
  }

  /** Forgets that an image was recorded in this run, so its next reads record a new profile (after `profile rm`). */
  forget (hex: string): void {
    this.recorded.delete(hex)
  }
}

/** The index of the chunk holding byte `pos`. */
function chunkAt (offsets: Float64Array, pos: number): number {
  let lo = 0
  let hi = offsets.length - 2
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (offsets[mid] <= pos) lo = mid
    else hi = mid - 1
  }
  return lo
}
