import { checkBootProfile, decodeBootProfile, type BootProfile } from '../chunks/boot-profile.js'
import type { Manifest } from '../chunks/manifest.js'
import type { Origin } from '../origin/origin.js'
import type { BootProfiles } from '../store/boot-profiles.js'
import { withDeadline } from '../util/deadline.js'
import { silentLogger, type Logger } from '../util/log.js'
import type { FetchJob } from './fetch-job.js'
import { hasBit } from './sources.js'

/** Bytes of profile chunks asked for at once: the profile's order is kept window by window. */
const WINDOW_BYTES = 4 * 1024 * 1024
/** Chunks asked for that did not arrive in this long are asked for again (an urgent batch may have failed). */
const REASK_MS = 3000
/** How long the start of the profile waits for the fetch's first chunks (the holders are known by then). */
const FIRST_CHUNKS_MS = 1500
/** How long the origin may take to answer for a profile. */
const ORIGIN_TIMEOUT_MS = 5000

export interface ProfilePrefetchOptions {
  profiles: BootProfiles
  origin?: Origin
  /** Asks the neighbours for their profile of an image; the first that `accept` takes. */
  askPeers?: (hex: string, accept: (profile: Uint8Array) => boolean, signal: AbortSignal) => Promise<Uint8Array | undefined>
  log?: Logger
}

/**
 * Fetches an image's boot profile first: when a fetch learns its manifest and a profile is known (in
 * the store, else from a neighbour, else from the origin), the profile's chunks are asked of the
 * fetch as a reader would ask for them (its Demand), in the profile's order, a few MiB at a time,
 * while the rest arrives as usual. A profile only orders the fetch: every chunk is still checked
 * against the manifest the fetch trusts, and a profile's entries that the manifest lacks are dropped.
 * A profile taken from a neighbour or the origin is kept in the store, to pass on.
 */
export class ProfilePrefetch {
  private readonly log: Logger
  private readonly stopped = new AbortController()

  constructor (private readonly o: ProfilePrefetchOptions) {
    this.log = o.log ?? silentLogger
  }

  /** Follows a new fetch job: its profile's chunks are asked for first once its manifest is known. */
  watch (job: FetchJob): void {
    job.once('manifest', () => {
      void this.run(job).catch(err => { this.log.debug('boot profile prefetch failed', { ref: job.status.ref, err }) })
    })
  }

  stop (): void {
    this.stopped.abort()
  }

  /** The image's profile checked against `manifest`: the store's, else a neighbour's, else the origin's. */
  async find (hex: string, manifest: Manifest, signal: AbortSignal): Promise<{ profile: BootProfile, from: 'store' | 'peer' | 'origin' } | undefined> {
    const stored = await this.o.profiles.load(hex, manifest).catch(() => undefined)
    if (stored != null) return { profile: stored, from: 'store' }
    const check = (bytes: Uint8Array): BootProfile | undefined => {
      const entries = decodeBootProfile(bytes)
      const p = entries != null ? checkBootProfile(entries, manifest, bytes.length) : undefined
      return p != null && p.chunks.length > 0 ? p : undefined
    }
    let bytes = await this.o.askPeers?.(hex, b => check(b) != null, signal).catch(() => undefined)
    let from: 'peer' | 'origin' = 'peer'
    if (bytes == null && this.o.origin?.readProfile != null) {
      const origin = this.o.origin
      bytes = await withDeadline(ORIGIN_TIMEOUT_MS, signal, async s => await origin.readProfile!(hex, { signal: s })).catch(() => undefined)
      from = 'origin'
    }
    const profile = bytes != null ? check(bytes) : undefined
    if (bytes == null || profile == null) return undefined
    await this.o.profiles.put(hex, bytes).catch(() => {})
    return { profile, from }
  }

  private async run (job: FetchJob): Promise<void> {
    const streaming = job.streaming
    if (streaming == null || job.finished) return
    const { manifest } = streaming
    const hex = Buffer.from(manifest.digest).toString('hex')
    const signal = this.stopped.signal
    const found = await this.find(hex, manifest, signal)
    if (found == null || job.finished || job.have == null) return
    const have = job.have
    const order = found.profile.chunks.filter(i => !hasBit(have, i))
    job.status.profile = { chunks: found.profile.chunks.length, from: found.from }
    if (order.length === 0) return
    this.log.info('fetching the boot profile first', { image: `sha256:${hex}`, chunks: order.length, from: found.from })
    // The fetch's first chunks say that its holders are known: asked earlier, the chunks would go to the origin.
    await progressOf(job, FIRST_CHUNKS_MS, signal)
    const lengths = new DataView(manifest.chunkLengths.buffer, manifest.chunkLengths.byteOffset, manifest.chunkLengths.byteLength)
    const pending = new Set<number>()
    let pendingBytes = 0
    let next = 0
    let askedAt = 0
    while (!job.finished && !signal.aborted) {
      for (const i of pending) {
        if (hasBit(have, i)) { pending.delete(i); pendingBytes -= lengths.getUint32(i * 4) }
      }
      const batch: number[] = []
      while (next < order.length && pendingBytes < WINDOW_BYTES) {
        const i = order[next++]
        if (hasBit(have, i)) continue
        pending.add(i)
        pendingBytes += lengths.getUint32(i * 4)
        batch.push(i)
      }
      if (pending.size === 0) break
      if (batch.length > 0) {
        job.demand.want(batch)
        askedAt = Date.now()
      } else if (Date.now() - askedAt > REASK_MS) {
        job.demand.want(pending)
        askedAt = Date.now()
      }
      await progressOf(job, 500, signal)
    }
  }
}

/** Resolves when the job stores chunks or ends, after `ms`, or when `signal` aborts. */
async function progressOf (job: FetchJob, ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      job.off('chunks', done)
      job.off('done', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    job.once('chunks', done)
    job.once('done', done)
    signal.addEventListener('abort', done, { once: true })
  })
}
