import type { CID } from 'multiformats/cid'
import { chunkCount, decodeManifest, encodeManifest, manifestCid, type Manifest } from '../chunks/manifest.js'
import { digestRef, parseRef, type ImageRef } from '../chunks/ref.js'
import { CacheFullError, DigestMismatchError, ImageNotFoundError, InvalidManifestError } from '../errors.js'
import type { Origin } from '../origin/origin.js'
import type { ImageRecord } from '../store/image-record.js'
import { ingest } from '../store/ingest.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { FetchJob, type FetchSource } from './fetch-job.js'
import { HaveFeeds, type HaveFeed } from './have-feeds.js'
import { InOrderHash } from './in-order-hash.js'
import { LyingPeers } from './lying-peers.js'
import { OriginClaims } from './origin-claims.js'
import type { OriginFetchLimits } from './origin-chunks.js'
import type { PeerSchedulerLimits } from './peer-scheduler.js'
import { hasBit, type HolderFinder, type PeerSource } from './sources.js'
import { swarmFetch, type SwarmLimits } from './swarm-fetch.js'
import { missingChunks, type Want } from './wants.js'
import { SharedWants } from './shared-wants.js'
import { withDeadline } from '../util/deadline.js'

/** Hooks for metrics. Every method is optional to call cheaply on hot paths. */
export interface FetchObserver {
  received: (source: FetchSource, bytes: number) => void
  /** Bytes read from the origin to check a peer's claim (a manifest, a size): not image bytes. */
  originMetadata: (bytes: number) => void
  badChunk: (peer: string) => void
  /** A peer caught lying about an image (see LyingPeers). */
  lyingPeer: (peer: string) => void
  cache: (hit: boolean) => void
  finished: (outcome: 'available' | 'failed', seconds: number) => void
}

const noObserver: FetchObserver = { received: () => {}, originMetadata: () => {}, badChunk: () => {}, lyingPeer: () => {}, cache: () => {}, finished: () => {} }

/** After this many peers' manifests proved false in one fetch, it gives up on peers' claims. */
const MAX_LIES_PER_FETCH = 8

export interface FetcherOptions {
  store: LevelStore
  holders: HolderFinder
  origin?: Origin
  log?: Logger
  observer?: FetchObserver
  peerLimits?: Partial<PeerSchedulerLimits>
  originLimits?: Partial<OriginFetchLimits>
  swarmLimits?: Partial<SwarmLimits>
  /** This node's PeerId: one of the candidates that origin reads are shared out to. */
  selfId?: string
  /** Told when an image starts to be fetched, becomes available (to announce it) or fails. */
  onState?: (record: ImageRecord) => void
  /** Told of every new fetch job (the daemon's job list follows its progress). */
  onJob?: (job: FetchJob) => void
  /** How long to wait for one peer's answer about a manifest or its chunks of an image. */
  askTimeoutMs?: number
  /**
   * Asked before an image's chunks are fetched: makes room for it under a size cap (evicting other
   * images) or throws why it cannot fit, so a fetch fails before it fills the disk.
   */
  admit?: (image: ImageToAdmit) => Promise<Admission>
  /** Peers caught lying, shared across fetches (one per node). */
  liars?: LyingPeers
  /** Maps a Glance image id to its image's sha256 (a Glance origin); without it such ids are not fetched. */
  glanceIds?: GlanceIdResolver
}

/** What the fetcher needs to fetch an image named by its Glance id. */
export type GlanceIdResolver = (id: string, options: { signal?: AbortSignal }) => Promise<{
  hex: string
  /** Checks the fetched image against what Glance says of the id (and records the alias); throws when it does not match. */
  verify?: (record: ImageRecord) => Promise<void>
}>

/** A ref the store names directly (a Glance id is first mapped to its sha256). */
type StoreRef = Exclude<ImageRef, { kind: 'glance' }>

/** Room made for one fetch; released once its record counts the room (`recorded`), or the fetch failed. */
export interface Admission {
  release: (recorded?: boolean) => void
}

/** An image about to be fetched: its manifest when known, else only its size (a whole-stream read). */
export interface ImageToAdmit {
  hex: string
  /** How messages name the image; `sha256:<hex>` when absent. */
  name?: string
  size: number
  manifest?: Manifest
  /** Told why the admission waits (near the cap), and undefined once it goes on. */
  onWait?: (reason: string | undefined) => void
  /** Set by the admission itself after a wait. */
  waited?: boolean
}

/** The manifest of an image to fetch and who gave it (a peer's claim is checked by the final digest). */
interface ManifestFound {
  manifest: Manifest
  from: 'store' | 'origin' | PeerSource
  /** Only the peer vouches for the size: no origin confirmed it and the caller did not name the manifest. */
  sizeUnconfirmed?: boolean
}

/**
 * Makes images available locally: from the store if present, else chunks from neighbours first and
 * only what no live neighbour holds from the origin. Every chunk is verified on arrival and the whole
 * image's sha256 before it is `available`. Concurrent requests for one image share one fetch; an
 * interrupted fetch resumes from the chunks already stored.
 */
export class Fetcher {
  private readonly jobs = new Map<string, FetchJob>()
  private readonly opts: FetcherOptions
  private readonly log: Logger
  private readonly observer: FetchObserver
  private readonly liars: LyingPeers
  /** The holders, less the peers caught lying. */
  private readonly holders: HolderFinder
  /** The have-feeds of the fetches running now (served to neighbours over have-updates). */
  readonly feeds = new HaveFeeds()
  /** Chunks the fetches running now are getting: images fetched together move a shared chunk once. */
  readonly shared = new SharedWants()

  constructor (options: FetcherOptions) {
    this.opts = options
    this.log = options.log ?? silentLogger
    this.observer = options.observer ?? noObserver
    this.liars = options.liars ?? new LyingPeers()
    this.holders = {
      findHolders: async (hex, o) => (await options.holders.findHolders(hex, o)).filter(p => !this.liars.has(p.id))
    }
  }

  /**
   * Starts (or joins) the fetch of an image and returns its job at once. Await `job.promise` for the
   * end; a job that failed is replaced by a new one on the next request.
   */
  start (ref: string): FetchJob {
    const key = this.jobKey(ref)
    const existing = this.jobs.get(key)
    if (existing != null && !existing.finished) return existing
    const job = new FetchJob(ref)
    this.jobs.set(key, job)
    const started = Date.now()
    // A finished job is forgotten here (fetch sets keep their own), so a long-running daemon's map
    // holds only the fetches in flight.
    const forget = (): void => { if (this.jobs.get(key) === job) this.jobs.delete(key) }
    job.once('done', forget)
    this.opts.onJob?.(job)
    this.run(parseRef(ref), job).then(() => {
      job.succeed()
      this.observer.finished('available', (Date.now() - started) / 1000)
    }, err => {
      this.log.warn('fetch failed', { ref, err })
      job.fail(err)
      this.observer.finished('failed', (Date.now() - started) / 1000)
    })
    return job
  }

  /** Fetches an image (or finds it stored) and returns its record once it is available. */
  async fetch (ref: string): Promise<ImageRecord> {
    const job = this.start(ref)
    await job.promise
    return await this.opts.store.resolve(job.status.image ?? ref)
  }

  /** The have-bitfield of an image being fetched now, by manifest CID (served to neighbours). */
  haveOf (manifestCid: string): Uint8Array | undefined {
    for (const job of this.jobs.values()) {
      if (!job.finished && job.have != null && job.streaming?.record.manifest === manifestCid) return job.have
    }
    return undefined
  }

  /** Restarts the fetches that a previous run of the daemon left unfinished. */
  async resumeUnfinished (): Promise<string[]> {
    const unfinished = (await this.opts.store.listImages()).filter(r => r.state === 'fetching')
    for (const r of unfinished) this.start(r.ref)
    return unfinished.map(r => r.ref)
  }

  private jobKey (ref: string): string {
    try {
      const r = parseRef(ref)
      return r.kind === 'manifest' ? r.cid.toString() : r.kind === 'glance' ? r.id : r.hex
    } catch {
      return ref
    }
  }

  private async run (ref: ImageRef, job: FetchJob): Promise<void> {
    if (ref.kind !== 'glance') {
      await this.runRef(ref, job)
      return
    }
    const stored = await this.opts.store.resolve(ref).catch(err => {
      if (err instanceof ImageNotFoundError) return undefined
      throw err
    })
    if (stored?.state === 'available') {
      await this.runRef(parseRef(stored.ref) as StoreRef, job)
      return
    }
    if (this.opts.glanceIds == null) throw new ImageNotFoundError(`no image with Glance id ${ref.id} in the store, and this node has no Glance origin`)
    const found = await this.opts.glanceIds(ref.id, {})
    job.status.image = digestRef(found.hex)
    await this.runRef({ kind: 'digest', hex: found.hex }, job)
    const record = await this.opts.store.resolve({ kind: 'digest', hex: found.hex })
    await found.verify?.(record)
  }

  private async runRef (ref: StoreRef, job: FetchJob): Promise<void> {
    const { store } = this.opts
    const local = await store.resolve(ref).catch(err => {
      if (err instanceof ImageNotFoundError) return undefined
      throw err
    })
    if (local?.state === 'available') {
      this.observer.cache(true)
      await store.noteRead(local.ref)
      job.status.image = local.ref
      job.status.size = local.size
      // A hit: no bytes moved, so the source counters are left alone.
      job.status.hit = true
      job.status.bytes.local = local.size
      return
    }
    this.observer.cache(false)
    if (local == null && ref.kind === 'prefix') {
      throw new ImageNotFoundError(`no stored image matches the prefix ${ref.hex}; to fetch an image give its full sha256 or manifest CID`)
    }
    // The manifest stored before this fetch, to put back if a peer's claim replaces it and proves false.
    const before = local != null ? await store.getManifest(local).catch(() => undefined) : undefined
    const hexOfRef = ref.kind === 'manifest' ? local?.ref.slice(7) : ref.hex
    const claims = new OriginClaims(this.opts.origin, hexOfRef ?? '', bytes => { this.observer.originMetadata(bytes) })
    const rejected = new Set<string>()
    let lie: DigestMismatchError | undefined
    let full: CacheFullError | undefined
    const tooBig: Array<{ peer: string, size: number }> = []
    // Once the image is verified, a peer that claimed another size for it lied.
    const convictTooBig = (size: number | undefined): void => {
      for (const c of tooBig) if (size != null && c.size !== size) this.caughtLying(c.peer, `its manifest says ${c.size} bytes, the image has ${size}`, job)
    }
    for (let tries = 0; tries <= MAX_LIES_PER_FETCH; tries++) {
      let found: ManifestFound | undefined
      try {
        found = await this.manifestFor(ref, local, job, rejected, hexOfRef != null ? claims : undefined)
      } catch (err) {
        if (full != null && err instanceof ImageNotFoundError) throw full
        if (lie != null && err instanceof ImageNotFoundError) throw new DigestMismatchError(`${lie.message}; no other peer or origin has the image`)
        throw err
      }
      if (found == null) {
        // No manifest anywhere: the origin streams the whole image and it is chunked here.
        await this.ingestFromOrigin((ref as { hex: string }).hex ?? hexOfRef, job)
        convictTooBig(job.status.size)
        return
      }
      const from = found.from
      job.trust = from === 'origin' ? 'origin' : ref.kind === 'manifest' ? 'named' : from === 'store' ? 'store' : 'peer'
      const cid = manifestCid(encodeManifest(found.manifest)).toString()
      job.confirmManifest = async () => (await claims.manifest().catch(() => null))?.cid === cid
      try {
        await this.fetchChunks(found.manifest, job, local)
        convictTooBig(found.manifest.size)
        return
      } catch (err) {
        if (err instanceof CacheFullError && found.sizeUnconfirmed === true && typeof found.from !== 'string') {
          // The size may be a liar's: another peer's manifest (or the origin's) may fit. Nothing was
          // stored yet (admission comes first). The peer is marked only if the image proves another size.
          full = err
          tooBig.push({ peer: found.from.id, size: found.manifest.size })
          waiting(job)(undefined)
          this.log.info('a peer\'s manifest does not fit the cache and nothing confirms its size; asking the others', { peer: found.from.id, image: job.status.image, size: found.manifest.size })
          rejected.add(cid)
          continue
        }
        if (!(err instanceof DigestMismatchError) || typeof found.from === 'string') throw err
        // The peer's manifest does not make the image it names: never keep it, ask the others.
        lie = err
        this.caughtLying(found.from.id, 'its manifest does not make the image it names', job)
        rejected.add(manifestCid(encodeManifest(found.manifest)).toString())
        await this.dropClaim(found.manifest, local, before, err)
      }
    }
    throw full ?? lie!
  }

  /** Notes a peer that lied: it is not asked again for a while (see LyingPeers). */
  private caughtLying (peer: string, why: string, job: FetchJob): void {
    this.liars.mark(peer)
    this.observer.lyingPeer(peer)
    this.log.warn('a peer lied about an image; it is not asked again for an hour', { peer, image: job.status.image ?? job.status.ref, why })
  }

  /**
   * Takes back what a false manifest wrote: the record goes (or the one from before this fetch comes
   * back, failed), so no name, type or format a liar chose stays. Its verified chunks wait for `gc`.
   */
  private async dropClaim (manifest: Manifest, local: ImageRecord | undefined, before: Manifest | undefined, why: Error): Promise<void> {
    const { store } = this.opts
    const hex = Buffer.from(manifest.digest).toString('hex')
    if (local != null && before != null) {
      const { ref: _r, size: _s, manifest: _m, chunks: _c, type: _t, name: _n, format: _f, ...fields } = local
      await store.commitImage(before, { ...fields, state: 'failed', reason: why.message })
      return
    }
    await store.transaction(async tx => {
      const rec = await tx.getRecord(hex)
      if (rec != null) await tx.removeImage(rec)
    })
  }

  /**
   * The manifest to fetch by. A fetching image's stored one (resume); for a failed image a fresh one
   * first, since the stored one may be why it failed, else the stored one; for a new image the peers'
   * or the origin's. Undefined: there is none, but the origin has the image. Manifests in `rejected`
   * proved false in this fetch.
   */
  private async manifestFor (ref: StoreRef, local: ImageRecord | undefined, job: FetchJob, rejected: Set<string>, claims?: OriginClaims): Promise<ManifestFound | undefined> {
    const stored = async (): Promise<ManifestFound> => ({ manifest: await this.opts.store.getManifest(local!), from: 'store' })
    if (local == null) return await this.findManifest(ref, job, rejected, claims)
    if (local.state !== 'failed' && !rejected.has(local.manifest)) return await stored()
    try {
      return await this.findManifest({ kind: 'digest', hex: local.ref.slice(7) }, job, rejected, claims)
    } catch (err) {
      if (err instanceof ImageNotFoundError && !rejected.has(local.manifest)) return await stored()
      throw err
    }
  }

  /**
   * The manifest a peer gives for the image, when it has one that fits and the origin (when it can
   * tell) agrees with; anything else is logged. A peer whose manifest the origin contradicts lied.
   */
  private async manifestFrom (peer: PeerSource, hex: string | undefined, cid: CID | undefined, job: FetchJob, rejected: Set<string>, claims?: OriginClaims): Promise<ManifestFound | undefined> {
    let manifest: Manifest
    let found: string
    try {
      const bytes = await withDeadline(this.opts.askTimeoutMs ?? 10_000, undefined, async signal => await peer.manifest(hex != null ? { hex } : { cid: cid!.toString() }, { signal }))
      if (bytes == null) return undefined
      this.count(job, 'peer', bytes.length)
      manifest = decodeManifest(bytes, cid)
      if (hex != null && Buffer.from(manifest.digest).toString('hex') !== hex) throw new InvalidManifestError(`manifest is for sha256:${Buffer.from(manifest.digest).toString('hex')}, not sha256:${hex}`)
      found = manifestCid(bytes).toString()
    } catch (err) {
      this.log.info('peer gave no usable manifest', { peer: peer.id, err })
      return undefined
    }
    if (rejected.has(found)) return undefined
    // Checked against the origin's word on the size before any chunk is fetched, where it can say: a
    // HEAD, not the origin's manifest, which for a large image is megabytes that every node would read.
    const size = await claims?.size()
    if (size != null && size !== manifest.size) {
      this.caughtLying(peer.id, `its manifest says ${manifest.size} bytes, the origin ${size}`, job)
      return undefined
    }
    return { manifest, from: peer, sizeUnconfirmed: size == null && cid == null }
  }

  /** A manifest for the ref from the peers (first that answers with a valid one), else the origin. */
  private async findManifest (ref: StoreRef, job: FetchJob, rejected: Set<string>, claims?: OriginClaims): Promise<ManifestFound | undefined> {
    const hex = ref.kind === 'manifest' ? undefined : ref.hex
    const cid = ref.kind === 'manifest' ? ref.cid : undefined
    // The connected neighbours first; only when none has it, wait for the slower search (the DHT).
    const asked = new Set<string>()
    for (const wait of [false, true]) {
      for (const peer of await this.holders.findHolders(hex ?? cid!.toString(), { wait })) {
        if (asked.has(peer.id) || this.liars.has(peer.id)) continue
        asked.add(peer.id)
        const found = await this.manifestFrom(peer, hex, cid, job, rejected, claims)
        if (found != null) return found
      }
    }
    const origin = this.opts.origin
    if (hex == null) {
      throw new ImageNotFoundError(`no reachable peer has the manifest ${cid!.toString()}${origin != null ? ' (the origin is addressed by sha256, not by manifest CID)' : ''}`)
    }
    if (origin == null) throw new ImageNotFoundError(`no reachable peer holds ${digestRef(hex)} and no origin is configured`)
    const theirs = await (claims ?? new OriginClaims(origin, hex, bytes => { this.observer.originMetadata(bytes) })).manifest()
    if (theirs != null && !rejected.has(theirs.cid)) return { manifest: theirs.manifest, from: 'origin' }
    const st = await origin.stat(hex)
    if (st == null) throw new ImageNotFoundError(`no reachable peer holds ${digestRef(hex)} and the origin ${origin.url} does not have it`)
    return undefined
  }

  private count (job: FetchJob, source: FetchSource, bytes: number): void {
    job.status.bytes[source] += bytes
    this.observer.received(source, bytes)
  }

  private async ingestFromOrigin (hex: string, job: FetchJob): Promise<void> {
    const origin = this.opts.origin!
    job.status.image = digestRef(hex)
    job.status.state = 'fetching'
    job.status.size = (await origin.stat(hex))?.size
    const admission = job.status.size != null ? await this.opts.admit?.({ hex, size: job.status.size, onWait: waiting(job) }) : undefined
    const count = (bytes: number): void => { this.count(job, 'origin', bytes) }
    async function * counted (): AsyncGenerator<Uint8Array> {
      for await (const piece of origin.read(hex)) {
        count(piece.length)
        yield piece
      }
    }
    const previous = await this.opts.store.getRecord(hex)
    const meta = previous != null ? { type: previous.type, name: previous.name, format: previous.format } : { type: 'other' as const, name: '', format: '' }
    let recorded: ImageRecord | undefined
    try {
      recorded = (await ingest(this.opts.store, counted(), { meta, expectRef: digestRef(hex), from: 'origin' })).record
    } finally {
      admission?.release(recorded != null)
    }
    // The same end as a chunked fetch: announced, counted by the cache and told to the event stream now.
    this.opts.onState?.(recorded)
  }

  private async fetchChunks (manifest: Manifest, job: FetchJob, previous: ImageRecord | undefined): Promise<void> {
    const { store } = this.opts
    const hex = Buffer.from(manifest.digest).toString('hex')
    job.status.image = digestRef(hex)
    job.status.size = manifest.size
    job.status.state = 'fetching'
    const now = new Date().toISOString()
    const admission = await this.opts.admit?.({ hex, size: manifest.size, manifest, onWait: waiting(job) })
    // Recorded as fetching first: GC keeps its chunks, a restart resumes it, peers may ask for it.
    // The record and the look at which chunks are stored already go together under the store's read
    // lock: a GC (which marks from the records) runs wholly before them, and what it swept is then
    // missing here, or wholly after, when the record keeps every chunk. The rest of the fetch holds
    // no lock, so a GC does not wait for it (and stall every read queued behind the GC).
    let found: { record: ImageRecord, missing: Awaited<ReturnType<typeof missingChunks>> } | undefined
    try {
      found = await store.lock.read(async () => {
        const record = await store.commitImage(manifest, { state: 'fetching', pinned: previous?.pinned ?? false, created: previous?.created ?? now, lastAccess: now, hits: previous?.hits ?? 0 })
        return { record, missing: await missingChunks(store, manifest) }
      })
    } finally {
      admission?.release(found != null)
    }
    const { record } = found
    job.manifestKnown(record, manifest)
    this.opts.onState?.(record)
    try {
      const { wants, presentBytes } = found.missing
      this.count(job, 'local', presentBytes)
      const have = new Uint8Array(Math.ceil(chunkCount(manifest) / 8)).fill(0xff)
      for (const w of wants) for (const i of w.indices) have[i >> 3] &= ~(0x80 >> (i & 7))
      const spare = have.length * 8 - chunkCount(manifest)
      if (spare > 0) have[have.length - 1] &= 0xff << spare
      job.have = have
      const storedBefore = Uint8Array.from(have) // job.have changes as chunks arrive
      const whole = new InOrderHash(store, manifest, i => hasBit(storedBefore, i))
      // Open until the image is verified, so the peers watching hear "complete" only then.
      const feed = wants.length > 0 ? this.feeds.open(record.manifest, chunkCount(manifest), have) : undefined
      let verified = false
      try {
        if (feed != null) await this.fetchWants(hex, record.manifest, manifest, wants, job, whole, feed)
        job.status.state = 'verifying'
        const actual = await whole.digest()
        if (!actual.equals(manifest.digest)) {
          throw new DigestMismatchError(`image assembled from its chunks hashes to sha256:${actual.toString('hex')}, not sha256:${hex}`)
        }
        verified = true
        job.verified = manifest
      } finally {
        if (feed != null) this.feeds.close(feed, verified)
      }
      const b = job.status.bytes
      // Written before the hook is looked at: `hook?.(await …)` would skip the write when no hook is set.
      const available = await store.updateRecord(digestRef(hex), { state: 'available', lastAccess: new Date().toISOString(), sources: { local: b.local, peers: b.peer, origin: b.origin } })
      this.opts.onState?.(available)
    } catch (err) {
      const failed = await store.updateRecord(digestRef(hex), { state: 'failed', reason: (err as Error).message }).catch(() => undefined)
      if (failed != null) this.opts.onState?.(failed)
      throw err
    }
  }

  /**
   * Gets the wanted chunks: those that another fetch of this node is getting now come from its copy
   * (SharedWants), the rest from the swarm; a shared chunk that fetch let go is fetched here after.
   */
  private async fetchWants (hex: string, manifestCid: string, manifest: Manifest, wants: Want[], job: FetchJob, whole: InOrderHash, feed: HaveFeed): Promise<void> {
    const claimed = this.shared.claim(job, wants)
    const mine = claimed.mine
    let theirs = claimed.theirs
    const leftover: Want[] = []
    // Each shared chunk is taken as it is stored, and not kept after: nothing holds its bytes.
    const waits = theirs.map(async ({ want, claimed }) => {
      const chunk = await claimed
      if (chunk == null || job.finished) {
        leftover.push(want)
        return
      }
      whole.add(want.indices, chunk.bytes)
      job.chunkVerified(want.indices, chunk.bytes)
      job.chunksStored(want.indices)
      feed.stored(want.indices)
      this.count(job, 'local', chunk.bytes.length * want.indices.length)
    })
    theirs = []
    if (waits.length > 0) this.log.debug('chunks shared with another fetch', { image: digestRef(hex), shared: waits.length })
    try {
      if (mine.length > 0) await this.swarmWants(hex, manifestCid, manifest, mine, job, whole, feed)
      await Promise.all(waits)
    } finally {
      this.shared.releaseAll(job, mine)
    }
    if (leftover.length > 0) await this.fetchWants(hex, manifestCid, manifest, leftover, job, whole, feed)
  }

  private async swarmWants (hex: string, manifestCid: string, manifest: Manifest, wants: Want[], job: FetchJob, whole: InOrderHash, feed: HaveFeed): Promise<void> {
    const { store } = this.opts
    const controller = new AbortController()
    this.log.debug('fetching chunks', { image: digestRef(hex), missing: wants.length })
    try {
      await swarmFetch({
        self: this.opts.selfId ?? 'self',
        hex,
        manifestCid,
        chunkCount: chunkCount(manifest),
        wants,
        holders: this.holders,
        feed,
        origin: this.opts.origin,
        verified: (chunk, want) => {
          whole.add(want.indices, chunk.bytes)
          job.chunkVerified(want.indices, chunk.bytes)
        },
        deliver: async (chunks, ws) => {
          await store.putMany(chunks)
          const indices = ws.flatMap(w => w.indices)
          job.chunksStored(indices)
          feed.stored(indices)
          this.shared.stored(job, chunks, ws)
        },
        received: (source, bytes) => { this.count(job, source, bytes) },
        badChunk: peer => { job.status.badChunks++; this.observer.badChunk(peer) },
        signal: controller.signal,
        log: this.log,
        limits: this.opts.swarmLimits,
        peerLimits: this.opts.peerLimits,
        originLimits: this.opts.originLimits,
        demand: job.demand
      })
    } catch (err) {
      controller.abort(err)
      throw err
    }
  }
}

/** Shows in a job's status why its admission waits, and clears it when it goes on. */
function waiting (job: FetchJob): (reason: string | undefined) => void {
  return reason => {
    if (reason == null) delete job.status.waiting
    else job.status.waiting = reason
  }
}
