import { CLAIMS_SPACING_MS, NEWS_SPACING_MS, claimsKey, nextBeat, type CandidateClaim } from '../fetch/candidates.js'
import { realClock, type Clock } from '../fetch/clock.js'
import { HaveFeed, HaveFeeds } from '../fetch/have-feeds.js'
import { hasBit, setBit, type ChunkReply, type HaveAnswer, type HolderFinder, type PeerSource } from '../fetch/sources.js'
import { keyOf } from '../fetch/wants.js'
import type { AbortOptions } from '../store/chunk-store.js'

/** Updates from one side of a watch are gathered for this long into one message, as the wire protocol does. */
const UPDATE_SPACING_MS = 100
/** Neighbours pushed to for one image, as the wire protocol bounds it: more get the bitfield once. */
const MAX_WATCHERS_PER_IMAGE = 64

/** An image as the in-memory nodes know it: its manifest and, in image order, its chunks' digests. */
export interface MemoryImage {
  hex: string
  manifestCid: string
  manifestBytes: Uint8Array
  /** Chunk i's digest. */
  digests: Uint8Array[]
}

/** How a node misbehaves when asked for chunks. */
export interface MemoryFaults {
  /** Chunks (by digest key) answered with damaged bytes; `'all'` for every chunk. */
  corrupt?: Set<string> | 'all'
  /** Answers this many chunks of each request, then sends nothing more (its stream stays open). */
  stallAfter?: number
  /** Every request fails at once, as a peer whose connection resets. */
  fail?: boolean
}

/**
 * Moves `bytes` from one node to another; resolves when they have arrived. The default takes no
 * time; the swarm simulator shares link capacity here.
 */
export type MemoryLink = (from: string, to: string, bytes: number, signal?: AbortSignal) => Promise<void>

export interface MemoryNetworkOptions {
  clock?: Clock
  /** One-way delay of every message, in ms. Default 0. */
  latencyMs?: number
  link?: MemoryLink
}

/** One node of a {@link MemoryNetwork}: its chunks, its images, and the fetches it runs now. */
export class MemoryNode {
  readonly chunks = new Map<string, Uint8Array>()
  readonly images = new Map<string, MemoryImage>()
  /** The have-feeds of the images this node fetches now; a watcher joins them, as with the libp2p node. */
  readonly feeds: HaveFeeds
  faults: MemoryFaults = {}
  alive = true
  /** Requests answered, by kind: a test's proof of who was asked. */
  readonly calls = { manifest: 0, have: 0, chunks: 0, watch: 0 }
  /** Chunk bytes sent to other nodes. */
  uploaded = 0
  private readonly deaths = new Set<() => void>()

  constructor (readonly id: string, clock: Clock) {
    this.feeds = new HaveFeeds(clock)
  }

  /** Knows an image's manifest (it can answer for it); chunks come with {@link MemoryNode.put}. */
  know (image: MemoryImage): void {
    this.images.set(image.hex, image)
    this.images.set(image.manifestCid, image)
  }

  /** Holds these chunks. */
  put (chunks: Iterable<{ digest: Uint8Array, bytes: Uint8Array }>): void {
    for (const c of chunks) this.chunks.set(keyOf(c.digest), c.bytes)
  }

  /** Holds the whole image. */
  hold (image: MemoryImage, bytesOf: (digest: Uint8Array) => Uint8Array): void {
    this.know(image)
    this.put(image.digests.map(digest => ({ digest, bytes: bytesOf(digest) })))
  }

  /** The node stops: requests to it fail and its watches end. */
  kill (): void {
    this.alive = false
    for (const d of [...this.deaths]) d()
  }

  /** The bits of an image this node holds now (its live fetch's, else from its chunks). */
  bitsOf (image: MemoryImage): Uint8Array {
    const feed = this.feeds.get(image.manifestCid)
    if (feed != null) return Uint8Array.from(feed.bits)
    const bits = new Uint8Array(Math.ceil(image.digests.length / 8))
    image.digests.forEach((d, i) => { if (this.chunks.has(keyOf(d))) setBit(bits, i) })
    return bits
  }

  /** Calls `fn` if the node dies before the returned function is called. */
  onDeath (fn: () => void): () => void {
    this.deaths.add(fn)
    return () => { this.deaths.delete(fn) }
  }
}

/**
 * Nodes in one process that speak to each other as imgswarm nodes do over libp2p — manifests,
 * have-bitfields, chunk batches and pushed have-updates — through plain calls, with an optional
 * delay and link model. The fetch code under test sees only {@link PeerSource} and
 * {@link HolderFinder}; nothing here is trusted by it.
 *
 * @example
 * const net = new MemoryNetwork({ clock })
 * const a = net.add('a'); a.hold(image, bytesOf)
 * const b = net.add('b')
 * const holders = net.holders('b') // finds a once it advertises
 * net.advertise(image.hex, 'a')
 */
export class MemoryNetwork {
  readonly nodes = new Map<string, MemoryNode>()
  readonly clock: Clock
  private readonly latencyMs: number
  private readonly link: MemoryLink
  /** Who advertised which key (an image digest in hex or a manifest CID): the DHT's provider records. */
  private readonly providers = new Map<string, Set<string>>()

  constructor (options: MemoryNetworkOptions = {}) {
    this.clock = options.clock ?? realClock
    this.latencyMs = options.latencyMs ?? 0
    this.link = options.link ?? (async () => {})
  }

  add (id: string): MemoryNode {
    const node = new MemoryNode(id, this.clock)
    this.nodes.set(id, node)
    return node
  }

  node (id: string): MemoryNode {
    const n = this.nodes.get(id)
    if (n == null) throw new Error(`no node ${id}`)
    return n
  }

  /** Records that `id` can serve `key`. */
  advertise (key: string, id: string): void {
    let set = this.providers.get(key)
    if (set == null) this.providers.set(key, set = new Set())
    set.add(id)
  }

  withdraw (key: string, id: string): void {
    this.providers.get(key)?.delete(id)
  }

  /**
   * The holder finder of node `self`: the advertisers of a key, each as a source seen from `self`.
   * With `neighbours`, only those nodes are found (a partial mesh: a node knows its connections).
   */
  holders (self: string, neighbours?: () => Iterable<string>): HolderFinder {
    return {
      findHolders: async (key, options) => {
        options?.signal?.throwIfAborted()
        const near = neighbours != null ? new Set(neighbours()) : undefined
        const ids = [...(this.providers.get(key) ?? [])].filter(id => id !== self && (near == null || near.has(id)) && this.nodes.get(id)?.alive === true)
        return ids.map(id => this.source(self, id))
      }
    }
  }

  /** Node `to` as a source seen from node `from`. */
  source (from: string, to: string): PeerSource {
    return new MemoryPeerSource(this, from, to)
  }

  /** One message's delay; rejects if the signal aborts or `to` dies meanwhile. */
  async hop (to: MemoryNode, signal?: AbortSignal): Promise<void> {
    if (!to.alive) throw new Error(`peer ${to.id} is gone`)
    if (this.latencyMs > 0) await this.clock.sleep(this.latencyMs, signal)
    signal?.throwIfAborted()
    if (!to.alive) throw new Error(`peer ${to.id} is gone`)
  }

  async send (from: string, to: string, bytes: number, signal?: AbortSignal): Promise<void> {
    await this.link(from, to, bytes, signal)
  }

  get latency (): number {
    return this.latencyMs
  }
}

class MemoryPeerSource implements PeerSource {
  readonly id: string

  constructor (private readonly net: MemoryNetwork, private readonly from: string, to: string) {
    this.id = to
  }

  private get remote (): MemoryNode {
    return this.net.node(this.id)
  }

  async manifest (ref: { hex: string } | { cid: string }, options?: AbortOptions): Promise<Uint8Array | undefined> {
    const remote = this.remote
    remote.calls.manifest++
    await this.net.hop(remote, options?.signal)
    const image = remote.images.get('hex' in ref ? ref.hex : ref.cid)
    await this.net.hop(remote, options?.signal)
    return image?.manifestBytes
  }

  async have (manifestCid: string, chunkCount: number, options?: AbortOptions): Promise<HaveAnswer | undefined> {
    const remote = this.remote
    remote.calls.have++
    await this.net.hop(remote, options?.signal)
    const image = remote.images.get(manifestCid)
    const feed = remote.feeds.get(manifestCid)
    await this.net.hop(remote, options?.signal)
    if (image == null) return undefined
    if (image.digests.length !== chunkCount) throw new Error(`${this.id} answered for ${image.digests.length} chunks, the manifest has ${chunkCount}`)
    return { bits: remote.bitsOf(image), fetching: feed != null && feed.outcome === undefined }
  }

  async * chunks (digests: Uint8Array[], options?: AbortOptions): AsyncIterable<ChunkReply> {
    const remote = this.remote
    const signal = options?.signal
    remote.calls.chunks++
    if (remote.faults.fail === true) throw new Error(`peer ${this.id} reset the stream`)
    // A dead peer's stream breaks: what is in flight fails.
    const died = new AbortController()
    const forget = remote.onDeath(() => { died.abort(new Error(`peer ${this.id} is gone`)) })
    const both = signal != null ? AbortSignal.any([signal, died.signal]) : died.signal
    try {
      await this.net.hop(remote, both) // the request
      let sent = 0
      for (const digest of digests) {
        if (remote.faults.stallAfter != null && sent >= remote.faults.stallAfter) {
          await new Promise<void>(resolve => { both.addEventListener('abort', () => { resolve() }, { once: true }) })
          both.throwIfAborted()
        }
        const key = keyOf(digest)
        const bytes = remote.chunks.get(key)
        if (bytes == null) {
          yield { digest, missing: true }
          continue
        }
        if (sent === 0) await this.net.hop(remote, both) // the first answer's way back
        await this.net.send(this.id, this.from, bytes.length, both)
        both.throwIfAborted()
        sent++
        remote.uploaded += bytes.length
        const corrupt = remote.faults.corrupt
        if (corrupt === 'all' || corrupt?.has(key) === true) {
          const bad = Uint8Array.from(bytes)
          bad[0] ^= 0xff
          yield { digest, bytes: bad }
        } else {
          yield { digest, bytes }
        }
      }
    } finally {
      forget()
    }
  }

  watchHave = async (feed: HaveFeed, options?: AbortOptions): Promise<boolean> => {
    const remote = this.remote
    const net = this.net
    const signal = options?.signal
    remote.calls.watch++
    await net.hop(remote, signal)
    const image = remote.images.get(feed.manifestCid)
    if (image == null) {
      await net.hop(remote, signal)
      return false
    }
    const theirs = remote.feeds.get(feed.manifestCid)
    if (theirs == null || theirs.outcome !== undefined || theirs.peers.size >= MAX_WATCHERS_PER_IMAGE) {
      // Not fetching it (or too many watchers): its bitfield once, as `have` would answer.
      const bits = remote.bitsOf(image)
      await net.hop(remote, signal)
      feed.setPeer(this, bits, false)
      feed.peerGone(this.id, this)
      return true
    }
    // Both ways over one "stream": the remote takes us as a peer of its fetch, we take it as one of ours.
    const back = net.source(this.id, this.from)
    const fetching = feed.outcome === undefined
    theirs.setPeer(back, Uint8Array.from(feed.bits), fetching)
    const ourBits = Uint8Array.from(theirs.bits)
    await net.hop(remote, signal)
    feed.setPeer(this, ourBits, true)
    await new Promise<void>(resolve => {
      let open = true
      const stops: Array<() => void> = []
      const close = (): void => {
        if (!open) return
        open = false
        for (const s of stops) s()
        resolve()
      }
      // Each side's updates reach the other a hop later, gathered as the wire protocol gathers them.
      stops.push(pushUpdates(net.clock, net.latency, theirs, {
        gained: runs => { if (open) feed.gained(this.id, runs) },
        claims: claims => { if (open) feed.hearClaims(claims) },
        complete: () => { if (open) { feed.peerComplete(this.id); close() } },
        ended: close
      }))
      stops.push(pushUpdates(net.clock, net.latency, feed, {
        gained: runs => { if (open) theirs.gained(back.id, runs) },
        claims: claims => { if (open) theirs.hearClaims(claims) },
        complete: () => { if (open) { theirs.peerComplete(back.id); close() } },
        ended: close
      }))
      stops.push(remote.onDeath(close))
      const onAbort = (): void => { close() }
      signal?.addEventListener('abort', onAbort, { once: true })
      stops.push(() => signal?.removeEventListener('abort', onAbort))
    })
    theirs.peerGone(back.id, back)
    feed.peerGone(this.id, this)
    return true
  }
}

interface UpdateSink {
  gained: (runs: Array<[number, number]>) => void
  claims: (claims: CandidateClaim[]) => void
  complete: () => void
  ended: () => void
}

/** Sends one feed's new chunks to the other side, as runs, at most one message per spacing; returns the stop. */
function pushUpdates (clock: Clock, latencyMs: number, feed: HaveFeed, sink: UpdateSink): () => void {
  let pending: number[] = []
  let nextAt = 0
  let timer: unknown
  let stopped = false
  const later = (fn: () => void): void => {
    clock.setTimer(() => { if (!stopped) fn() }, latencyMs)
  }
  // Candidates on their own beat, as the wire protocol sends them: at most one message a spacing, only when they changed.
  let claimsTimer: unknown
  let claimsSent = ''
  const sendClaims = (): void => {
    claimsTimer = undefined
    if (stopped) return
    const claims = feed.claims()
    const key = claimsKey(claims)
    if (key === claimsSent) return
    claimsSent = key
    later(() => { sink.claims(claims) })
  }
  let claimsDue = Infinity
  const claimsIn = (ms: number): void => {
    if (claimsTimer != null && claimsDue <= clock.now() + ms) return
    if (claimsTimer != null) clock.clearTimer(claimsTimer)
    claimsDue = clock.now() + ms
    claimsTimer = clock.setTimer(sendClaims, ms)
  }
  const flush = (): void => {
    timer = undefined
    if (stopped || pending.length === 0) return
    const runs = toRuns(pending)
    pending = []
    nextAt = clock.now() + UPDATE_SPACING_MS
    later(() => { sink.gained(runs) })
  }
  const unsubscribe = feed.subscribe(x => {
    if (stopped) return
    if (x === 'candidates') { claimsIn(NEWS_SPACING_MS); return }
    if (x !== 'end') claimsIn(nextBeat(clock.now(), CLAIMS_SPACING_MS))
    if (x === 'claims') return
    if (x === 'end') {
      flush()
      const complete = feed.outcome === true
      later(() => { if (complete) sink.complete(); else sink.ended() })
      return
    }
    for (const i of x) pending.push(i)
    if (timer != null) return
    timer = clock.setTimer(flush, Math.max(0, nextAt - clock.now()))
  })
  return () => {
    stopped = true
    unsubscribe()
    if (timer != null) clock.clearTimer(timer)
    if (claimsTimer != null) clock.clearTimer(claimsTimer)
  }
}

/** Chunk indices as sorted runs of consecutive indices. */
function toRuns (indices: number[]): Array<[number, number]> {
  const sorted = [...new Set(indices)].sort((a, b) => a - b)
  const runs: Array<[number, number]> = []
  for (const i of sorted) {
    const last = runs.at(-1)
    if (last != null && last[0] + last[1] === i) last[1]++
    else runs.push([i, 1])
  }
  return runs
}

/** Whether a node's bits (from {@link MemoryNode.bitsOf}) hold every chunk of an image. */
export function holdsAll (bits: Uint8Array, chunkCount: number): boolean {
  for (let i = 0; i < chunkCount; i++) if (!hasBit(bits, i)) return false
  return true
}
