import { statfs } from 'node:fs/promises'
import type { Manifest } from '../chunks/manifest.js'
import { CacheFullError, UsageError } from '../errors.js'
import type { Admission, ImageToAdmit } from '../fetch/fetcher.js'
import { hexOf, type ImageRecord } from '../store/image-record.js'
import type { LevelStore } from '../store/level-store.js'
import { formatBytes } from '../util/format.js'
import { silentLogger, type Logger } from '../util/log.js'
import type { SizeLimit } from '../util/units.js'
import { BUSY, ChunkRefs, LEASED, PINNED } from './chunk-refs.js'
import type { InUse } from './in-use.js'

/** Eviction starts above this share of the cap… */
export const DEFAULT_HIGH_WATER = 0.9
/** …and stops at this one, so that it runs in bursts, not on every fetch. */
export const DEFAULT_LOW_WATER = 0.8
/**
 * An image fetched, imported or read this recently is not evicted: the compute agent that fetched
 * it may not have read or leased it yet, and on a store full of leased images it would otherwise be
 * the one image eviction could take, the moment its fetch ended.
 */
export const DEFAULT_GRACE_MS = 60_000
/**
 * A survey younger than this serves the next admission, which updates it: a preheat of many images on
 * a store near its cap would otherwise read every manifest once per image. Victims are looked at again
 * before they go, and checks (enforce) survey afresh.
 */
const SURVEY_REUSE_MS = 5_000
/** How long a fetch near the cap may wait for busy images to become evictable before it is refused. */
export const DEFAULT_ADMIT_WAIT_MS = 120_000
/** How often a waiting admission looks again. */
const ADMIT_RETRY_MS = 1_000
/** How long a GC after eviction waits for the store lock to be free before it queues for it anyway. */
const GC_PATIENCE_MS = 60_000

export interface CacheLimits {
  maxSize: SizeLimit
  /** Shares of the cap, 0 < lowWater < highWater ≤ 1. */
  highWater: number
  lowWater: number
}

/** What `imgswarm df` shows. Byte counts are of distinct chunks: an image's shared chunks count once. */
export interface CacheReport {
  /** Chunk bytes that stored images name (an image being fetched counts whole: its room is taken). */
  used: number
  /** The cap in bytes and its watermarks, when the daemon has one. */
  cap: number | null
  highWater: number | null
  lowWater: number | null
  images: number
  /** Bytes that pinned images name (with replicas the cluster keeps here). */
  pinned: number
  /** Bytes that leased images name. */
  leased: number
  /** Bytes that images being read, served or fetched, or accessed within the grace period, name. */
  inUse: number
  /** What evicting every image that may go would free. */
  reclaimable: number
  /** The store's database on disk (it lags `used` until GC and compaction run) and its disk. */
  disk: { store: number, free: number, total: number } | null
}

export interface EvictorOptions {
  limits?: CacheLimits
  /** True when the cluster's policy keeps the image here (minimum replicas). */
  protects?: (hex: string) => boolean
  /** How long after its last access an image may not be evicted. Default {@link DEFAULT_GRACE_MS}. */
  graceMs?: number
  log?: Logger
  onEvicted?: (record: ImageRecord, freedBytes: number) => void
  /** How long an admission may wait for busy images to become evictable. Default {@link DEFAULT_ADMIT_WAIT_MS}. */
  admitWaitMs?: number
}

/** One image and why it must stay (a mask of PINNED, LEASED, BUSY; 0 when it may be evicted). */
interface Candidate {
  record: ImageRecord
  protect: number
}

interface Survey {
  refs: ChunkRefs
  candidates: Candidate[]
  /** When the first image that is busy only by its grace period leaves it: the survey is stale from then. */
  graceEnds: number
}

/**
 * Keeps the store under its size cap: above the high watermark it evicts the least recently used
 * images that are not pinned, leased, in use, being fetched or kept as replicas, down to the low
 * watermark, then collects their chunks. A fetch that could not fit even after that is refused
 * before it writes anything. Without a cap it only reports usage.
 */
export class Evictor {
  private readonly store: LevelStore
  /** Images being read or served in this process (see InUse). */
  private readonly inUse: InUse
  private readonly opts: EvictorOptions
  private readonly log: Logger
  /** Evictions and admissions run one at a time, so two fetches never count the same free room. */
  private queue: Promise<unknown> = Promise.resolve()
  /** Room promised to admitted fetches whose records are not written yet. */
  private readonly reserved = new Map<string, { bytes: number, manifest?: Manifest }>()
  private gcRunning?: Promise<void>
  private gcAgain = false
  private timer?: NodeJS.Timeout
  private stopped = false
  private recent?: { survey: Survey, at: number }
  private queuedCheck?: Promise<ImageRecord[]>
  /** Bytes used at the last look (metrics read this instead of surveying the store on each scrape). */
  lastUsed = 0

  constructor (store: LevelStore, inUse: InUse, options: EvictorOptions = {}) {
    this.store = store
    this.inUse = inUse
    this.opts = options
    this.log = options.log ?? silentLogger
    const l = options.limits
    if (l != null && !(l.lowWater > 0 && l.lowWater < l.highWater && l.highWater <= 1)) {
      throw new UsageError(`cache watermarks must satisfy 0 < low < high ≤ 1 (got low ${l.lowWater}, high ${l.highWater})`)
    }
  }

  /** Checks the cap every `intervalMs` (and lets expired leases lapse). */
  start (intervalMs = 10_000): void {
    this.timer = setInterval(() => { void this.enforce().catch(err => { this.log.warn('eviction failed', { err }) }) }, intervalMs)
    this.timer.unref()
  }

  stop (): void {
    this.stopped = true
    clearInterval(this.timer)
  }

  /** The cap in bytes now (a percentage follows the size of the data dir's disk), or null. */
  async capBytes (): Promise<number | null> {
    const max = this.opts.limits?.maxSize
    if (max == null) return null
    if ('bytes' in max) return max.bytes
    const fs = await statfs(this.store.dir ?? '.')
    return Math.floor(fs.blocks * fs.bsize * max.percent / 100)
  }

  async report (): Promise<CacheReport> {
    return await this.serial(async () => {
      const { refs, candidates } = await this.survey()
      const cap = await this.capBytes()
      const disk = await this.store.diskUsage()
      return {
        used: refs.total,
        cap,
        highWater: cap != null ? this.opts.limits!.highWater : null,
        lowWater: cap != null ? this.opts.limits!.lowWater : null,
        images: candidates.length,
        pinned: refs.bytesWith(PINNED),
        leased: refs.bytesWith(LEASED),
        inUse: refs.bytesWith(BUSY),
        reclaimable: refs.bytesWith(0),
        disk
      }
    })
  }

  /**
   * Evicts down to the low watermark when usage is above the high one. Returns the images evicted.
   * Calls while one is waiting for its turn join it: after a preheat's many fetches end, one check runs.
   */
  async enforce (): Promise<ImageRecord[]> {
    this.queuedCheck ??= this.serial(async () => {
      this.queuedCheck = undefined // changes from now on need a check of their own
      await this.store.leases() // lets expired leases lapse from the store
      const cap = await this.capBytes()
      if (cap == null) return []
      const high = cap * this.opts.limits!.highWater
      if (await this.upperBound() <= high) return []
      const survey = await this.survey()
      this.recent = { survey, at: Date.now() }
      if (survey.refs.total <= high) return []
      return await this.evict(survey, cap * this.opts.limits!.lowWater)
    })
    return await this.queuedCheck
  }

  /**
   * Makes room for an image about to be fetched, or throws CacheFullError when it cannot fit even
   * if every image that may go were evicted (then nothing is evicted). When it would fit once images
   * that are only busy (being fetched or read, or used within the grace period) may go, it waits for
   * that, up to `admitWaitMs`, telling `onWait` why, rather than failing a spawn that a few seconds
   * would let through.
   */
  async admit (image: ImageToAdmit): Promise<Admission> {
    const until = Date.now() + (this.opts.admitWaitMs ?? DEFAULT_ADMIT_WAIT_MS)
    for (;;) {
      const outcome = await this.admitOnce(image)
      if ('admission' in outcome) {
        if (outcome.waited) image.onWait?.(undefined)
        return outcome.admission
      }
      if (!outcome.mayClear || Date.now() >= until || this.stopped) throw outcome.refused
      image.onWait?.(`${outcome.refused.message}; waiting for busy or recently used images to become evictable`)
      await new Promise(resolve => setTimeout(resolve, ADMIT_RETRY_MS))
      this.recent = undefined
      image = { ...image, waited: true }
    }
  }

  private async admitOnce (image: ImageToAdmit): Promise<{ admission: Admission, waited?: boolean } | { refused: CacheFullError, mayClear: boolean }> {
    const cap = await this.capBytes()
    const release = (recorded = false): void => {
      this.reserved.delete(image.hex)
      // A fetch that ended before its record was written gives its room back: a reused survey counts it.
      if (!recorded) this.recent = undefined
    }
    if (cap == null) return { admission: { release }, waited: image.waited }
    return await this.serial(async () => {
      if (await this.upperBound() + image.size <= cap * this.opts.limits!.highWater) {
        this.reserved.set(image.hex, { bytes: image.size, manifest: image.manifest })
        this.recent = undefined // it does not count this image
        return { admission: { release }, waited: image.waited }
      }
      const survey = await this.recentSurvey(image.hex)
      const { refs } = survey
      const needed = image.manifest != null ? refs.newBytes(image.manifest) : image.size
      const name = image.name ?? `sha256:${image.hex}`
      if (needed > cap) {
        return { refused: new CacheFullError(`cannot fetch ${name}: it needs ${formatBytes(needed)}, more than the cache cap of ${formatBytes(cap)} (--max-size)`), mayClear: false }
      }
      // Pinned and leased bytes stay; busy ones go in time. Whether it would fit then decides waiting.
      const mayClear = needed <= cap - refs.bytesWith(PINNED | LEASED)
      const full = (held: number): CacheFullError => new CacheFullError(`cannot fetch ${name}: it needs ${formatBytes(needed)} and the cache cap is ${formatBytes(cap)}, of which ${formatBytes(held)} is held by pinned, leased, in-use, recently used or fetching images (${formatBytes(refs.bytesWith(PINNED))} pinned, ${formatBytes(refs.bytesWith(LEASED))} leased)`)
      // The image's own chunks count as busy: those it shares with an image that goes are not freed.
      if (image.manifest != null) refs.add(image.manifest, BUSY)
      else refs.total += needed
      // Reserved before any eviction: an old record of this image (a failed fetch) is then busy.
      this.reserved.set(image.hex, { bytes: needed, manifest: image.manifest })
      const refuse = (held: number): { refused: CacheFullError, mayClear: boolean } => {
        release()
        this.recent = undefined // it counts this image
        return { refused: full(held), mayClear }
      }
      try {
        const held = refs.total - refs.bytesWith(0)
        if (held > cap) return refuse(held - needed)
        if (refs.total > cap * this.opts.limits!.highWater) {
          await this.evict(survey, cap * this.opts.limits!.lowWater)
          // Images that became busy or leased since the survey were skipped: it may still not fit.
          if (refs.total > cap) return refuse(refs.total - refs.bytesWith(0) - needed)
        }
      } catch (err) {
        release()
        this.recent = undefined
        throw err
      }
      return { admission: { release }, waited: image.waited }
    })
  }

  /**
   * An image's state changed (a fetch started or ended): a survey taken before no longer says which
   * images are busy, so the next admission takes a new one.
   */
  stateChanged (): void {
    this.recent = undefined
  }

  /**
   * Evicts least recently used evictable images (failed ones first) until usage is at `target` or
   * none is left, then starts a GC for their chunks.
   */
  private async evict (survey: Survey, target: number): Promise<ImageRecord[]> {
    const { refs } = survey
    const order = survey.candidates
      .filter(c => c.protect === 0)
      .sort((a, b) => Number(b.record.state === 'failed') - Number(a.record.state === 'failed') || a.record.lastAccess.localeCompare(b.record.lastAccess))
    const evicted: ImageRecord[] = []
    for (const { record: seen } of order) {
      if (refs.total <= target) break
      // Looked at again, and removed, under the store's record lock: a read, pin, lease or fetch that
      // started since the survey keeps the image, and none can start between the look and the removal.
      const gone = await this.store.transaction(async tx => {
        const now = await tx.getRecord(hexOf(seen))
        if (now == null || this.protection(now, (await tx.leasesOf(hexOf(now))).length > 0) !== 0) return undefined
        const manifest = await tx.getManifest(now).catch(() => undefined)
        await tx.removeImage(now)
        return { record: now, manifest }
      })
      if (gone == null) continue
      const { record } = gone
      const freed = gone.manifest != null ? refs.remove(gone.manifest) : 0
      this.lastUsed = refs.total
      evicted.push(record)
      this.opts.onEvicted?.(record, freed)
      this.log.info('evicted image', { image: record.ref, name: record.name, lastAccess: record.lastAccess, freed })
    }
    if (evicted.length > 0) this.collect()
    return evicted
  }

  /** Runs one GC at a time in the background; one more if more was evicted meanwhile. */
  private collect (): void {
    if (this.gcRunning != null) {
      this.gcAgain = true
      return
    }
    this.gcRunning = (async () => {
      do {
        this.gcAgain = false
        await this.untilIdle()
        // The chunks of admitted fetches whose records are not written yet are kept: a new version
        // shares most of its chunks with the old one it made room for.
        const keep = (): Manifest[] => [...this.reserved.values()].flatMap(r => r.manifest != null ? [r.manifest] : [])
        const r = await this.store.gc({ keep }).catch(err => { this.log.warn('gc after eviction failed', { err }); return undefined })
        if (r != null) this.log.info('collected evicted chunks', { chunks: r.chunks, bytes: r.bytes })
      } while (this.gcAgain)
    })().finally(() => { this.gcRunning = undefined })
  }

  /**
   * Waits (up to GC_PATIENCE_MS) until no import or export holds the store lock: GC needs it alone,
   * and once it waits for the lock every new read queues behind it, so a GC started during a long
   * export would stall every other read until that export ends. The space comes back a little later.
   */
  private async untilIdle (): Promise<void> {
    for (const until = Date.now() + GC_PATIENCE_MS; !this.store.lock.idle && Date.now() < until && !this.stopped;) {
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  }

  /** Waits for the GC that eviction started, if any (tests, shutdown). */
  async settled (): Promise<void> {
    while (this.gcRunning != null) await this.gcRunning
  }

  /** Being fetched (or admitted to be), read or served, or accessed within the grace period. */
  private busy (record: ImageRecord): boolean {
    const grace = this.opts.graceMs ?? DEFAULT_GRACE_MS
    const hex = hexOf(record)
    return record.state === 'fetching' || this.reserved.has(hex) || this.inUse.has(hex) || Date.parse(record.lastAccess) > Date.now() - grace
  }

  /** Whether the cluster's replica policy keeps the image here (eviction treats it as pinned). */
  keptAsReplica (hex: string): boolean {
    return this.opts.protects?.(hex) === true
  }

  /** Why an image must stay: a mask of PINNED (replicas too), LEASED and BUSY; 0 when it may go. */
  private protection (record: ImageRecord, leased: boolean): number {
    let mask = 0
    if (record.pinned || this.opts.protects?.(hexOf(record)) === true) mask |= PINNED
    if (leased) mask |= LEASED
    if (this.busy(record)) mask |= BUSY
    return mask
  }

  /**
   * Image sizes and reservations added up: never below the distinct chunk bytes, and cheap (records
   * only), so the manifests are read only when the store may be near its cap.
   */
  private async upperBound (): Promise<number> {
    const reserved = this.reservedNow()
    const records = await this.store.listImages()
    const present = new Set(records.map(r => hexOf(r)))
    let bytes = records.reduce((n, r) => n + r.size, 0)
    for (const [hex, r] of reserved) if (!present.has(hex)) bytes += r.bytes
    this.lastUsed = bytes
    return bytes
  }

  /** The survey of the last 5 s, or a new one (see SURVEY_REUSE_MS); `admitting` is busy in a new one. */
  private async recentSurvey (admitting?: string): Promise<Survey> {
    const now = Date.now()
    if (this.recent != null && now - this.recent.at < SURVEY_REUSE_MS && now < this.recent.survey.graceEnds) return this.recent.survey
    const survey = await this.survey(admitting)
    this.recent = { survey, at: Date.now() }
    return survey
  }

  /**
   * The reservations, copied before the records are listed: a fetch that writes its record and drops
   * its reservation while the listing is read is then counted once, not missed.
   */
  private reservedNow (): Array<[string, { bytes: number }]> {
    return [...this.reserved].map(([hex, r]) => [hex, { bytes: r.bytes }])
  }

  private async survey (admitting?: string): Promise<Survey> {
    const reserved = this.reservedNow()
    const records = await this.store.listImages()
    const leased = new Set((await this.store.leases()).map(l => l.ref))
    const refs = new ChunkRefs()
    const candidates: Candidate[] = []
    const present = new Set<string>()
    for (const record of records) {
      const hex = hexOf(record)
      present.add(hex)
      const protect = this.protection(record, leased.has(record.ref)) | (hex === admitting ? BUSY : 0)
      let manifest: Manifest
      try {
        manifest = await this.store.getManifest(record)
      } catch {
        continue // a damaged manifest names no chunks; verify reports it
      }
      refs.add(manifest, protect)
      candidates.push({ record, protect })
    }
    // Room promised to fetches that have not written their record yet counts as used.
    for (const [hex, r] of reserved) if (!present.has(hex) && hex !== admitting) refs.total += r.bytes
    this.lastUsed = refs.total
    const grace = this.opts.graceMs ?? DEFAULT_GRACE_MS
    const now = Date.now()
    let graceEnds = Infinity
    for (const { record } of candidates) {
      const ends = Date.parse(record.lastAccess) + grace
      if (ends > now) graceEnds = Math.min(graceEnds, ends)
    }
    return { refs, candidates, graceEnds }
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return await run
  }
}
