import { CID } from 'multiformats/cid'
import { encodeManifest } from '../chunks/manifest.js'
import { ChunkCorruptError, ImageNotFoundError, ProtocolError } from '../errors.js'
import type { ChunkReply, HaveAnswer, HolderFinder, PeerSource } from '../fetch/sources.js'
import type { AbortOptions } from '../store/chunk-store.js'
import type { ImageRecord } from '../store/image-record.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { Slots } from '../util/slots.js'
import type { TokenBucket } from '../util/token-bucket.js'
import type { HaveFeed, HaveFeeds } from '../fetch/have-feeds.js'
import { Bitfield } from './bitfield.js'
import { DEFAULT_MAX_STREAMS_PER_PEER, handle, onlyFrame, request } from './exchange.js'
import { serveHaveUpdates, watchHave } from './have-updates.js'
import type { PeerLimits } from './peer-limits.js'
import {
  CHUNKS, HAVE, HAVE_UPDATES, MANIFEST, MAX_CHUNK_BATCH, decodeChunksRequest, decodeHaveRequest, decodeManifestRequest,
  encodeChunksRequest, encodeChunksResponse, encodeError, encodeHaveRequest, encodeHaveResponse,
  encodeManifestRequest, encodeManifestResponse, manifestResponseFrames, readChunksResponse, readHaveAnswer,
  readManifestResponse, type HaveResponse
} from './protocols.js'
import type { AnyLibp2p, PeerId } from './types.js'

/** Chunks read from the store per request while answering a batch: bounds the memory of one answer. */
const SERVE_WINDOW = 16

export interface ServeOptions {
  log?: Logger
  /** Told of every manifest and chunk byte sent to a peer. */
  served?: (bytes: number) => void
  /** The live have-bitfield of an image this node is fetching, by manifest CID, if it has one. */
  haveOf?: (manifestCid: string) => Uint8Array | undefined
  /**
   * The fetches running now, for pushed have-updates (HAVE_UPDATES). Without it the node serves only
   * the polled `have`, as the previous release did (tests of mixed releases use that).
   */
  feeds?: Pick<HaveFeeds, 'get'>
  /** Per-peer request rate and bytes in flight, shared with the node's other protocols. */
  limits?: PeerLimits
  /** The node's upload cap (`--max-upload-rate`), shared by every transfer: bytes a second to all peers. */
  upload?: TokenBucket
  /** Marks images that peers ask for as in use, so that eviction leaves them alone meanwhile. */
  inUse?: { touch: (hex: string) => void }
}

/**
 * Answers neighbours from the store: manifests, which chunks of an image this node holds (also while
 * it is still fetching that image), and chunk batches. Every chunk is verified before it is sent; a
 * damaged one is answered as missing.
 */
export async function servePeers (node: AnyLibp2p, store: LevelStore, options: ServeOptions = {}): Promise<void> {
  const log = options.log ?? silentLogger
  const served = options.served ?? (() => {})
  const onError = (err: Error, peer: PeerId): void => { log.debug('peer exchange failed', { peer: peer.toString(), err }) }
  const { limits, upload } = options
  const guard = { onError, limits, refusal: (message: string) => encodeError({ reason: 'busy', message }) }

  const recordFor = async (ref: { digest: Uint8Array } | { cid: CID }): Promise<ImageRecord | undefined> => {
    try {
      return 'digest' in ref ? await store.resolve(`sha256:${Buffer.from(ref.digest).toString('hex')}`) : await store.resolve(ref.cid.toString())
    } catch (err) {
      if (err instanceof ImageNotFoundError) return undefined
      throw err
    }
  }

  await handle(node, MANIFEST, async (frames, send, ctx) => {
    const req = decodeManifestRequest(await onlyFrame(frames, MANIFEST))
    const record = await recordFor(req)
    if (record == null || record.state === 'failed') {
      await send(encodeManifestResponse({ type: 'not-found' }))
      return
    }
    options.inUse?.touch(record.ref.slice('sha256:'.length))
    const bytes = encodeManifest(await store.getManifest(record))
    for (const frame of manifestResponseFrames(bytes)) {
      await upload?.take(frame.length, { signal: ctx.signal })
      await send(frame)
    }
    served(bytes.length)
  }, guard)

  // What `have` answers: all of an available image, the live bitfield of one being fetched, else a store scan.
  const snapshot = async (cid: CID): Promise<HaveResponse> => {
    // A failed image's chunks are as good as any (each is verified); only its manifest is suspect.
    const record = await recordFor({ cid })
    if (record == null) return { type: 'not-found' }
    options.inUse?.touch(record.ref.slice('sha256:'.length))
    const manifest = await store.getManifest(record)
    const n = manifest.chunkDigests.length / 32
    const live = options.haveOf?.(record.manifest)
    if (record.state === 'available') return { type: 'have', bitfield: Bitfield.from(new Array<boolean>(n).fill(true)), fetching: false }
    if (live != null && live.length === Bitfield.byteLength(n)) return { type: 'have', bitfield: new Bitfield(n, Uint8Array.from(live)), fetching: true }
    const digests: Uint8Array[] = []
    for (let i = 0; i < n; i++) digests.push(manifest.chunkDigests.subarray(i * 32, i * 32 + 32))
    return { type: 'have', bitfield: Bitfield.from(await store.hasMany(digests)), fetching: false }
  }

  await handle(node, HAVE, async (frames, send) => {
    const req = decodeHaveRequest(await onlyFrame(frames, HAVE))
    await send(encodeHaveResponse(await snapshot(req.manifest)))
  }, guard)

  if (options.feeds != null) {
    await serveHaveUpdates(node, { feeds: options.feeds, snapshot, sourceFor: peer => new LibpPeerSource(node, peer), guard })
  }

  await handle(node, CHUNKS, async (frames, send, ctx) => {
    const { digests } = decodeChunksRequest(await onlyFrame(frames, CHUNKS))
    const peer = ctx.peer.toString()
    for (let i = 0; i < digests.length; i += SERVE_WINDOW) {
      ctx.signal.throwIfAborted()
      const window = await readForServing(store, digests.slice(i, i + SERVE_WINDOW))
      // Counted from the read until the stream has taken the bytes: a peer that stops reading pins
      // at most its budget, its other streams wait.
      const held = window.reduce((n, b) => n + (b?.length ?? 0), 0)
      await limits?.hold(peer, held, ctx.signal)
      try {
        for (const bytes of window) {
          if (bytes == null) {
            await send(encodeChunksResponse({ type: 'missing' }))
          } else {
            await upload?.take(bytes.length, { signal: ctx.signal })
            await send(encodeChunksResponse({ type: 'chunk', bytes }))
            served(bytes.length)
          }
        }
      } finally {
        limits?.release(peer, held)
      }
    }
  }, guard)
}

/** Verified bytes for each digest, or undefined where the chunk is absent or damaged (then dropped). */
async function readForServing (store: LevelStore, digests: Uint8Array[]): Promise<Array<Uint8Array | undefined>> {
  const present = await store.hasMany(digests)
  const wanted = digests.filter((_, i) => present[i])
  let chunks: Array<Uint8Array | undefined>
  try {
    chunks = (await store.getMany(wanted)).map(c => c.bytes)
  } catch {
    // One of them is damaged (or vanished to gc): go one by one, and drop what does not verify.
    chunks = await Promise.all(wanted.map(async d => {
      try {
        return (await store.get(d)).bytes
      } catch (err) {
        if (err instanceof ChunkCorruptError) await store.deleteMany([d]).catch(() => {})
        return undefined
      }
    }))
  }
  let j = 0
  return present.map(p => p ? chunks[j++] : undefined)
}

/** A connected neighbour as a source of manifests and chunks, over the imgswarm protocols. */
export class LibpPeerSource implements PeerSource {
  readonly id: string
  private readonly node: AnyLibp2p
  private readonly peer: PeerId

  /** `pushed: false` leaves out have-updates, as a node of the previous release has none. */
  constructor (node: AnyLibp2p, peer: PeerId, options: { pushed?: boolean } = {}) {
    this.node = node
    this.peer = peer
    this.id = peer.toString()
    if (options.pushed === false) this.watchHave = undefined
  }

  watchHave? = async (feed: HaveFeed, options?: AbortOptions): Promise<boolean> => await watchHave(this.node, this.peer, this, feed, options)

  async manifest (ref: { hex: string } | { cid: string }, options?: AbortOptions): Promise<Uint8Array | undefined> {
    const req = 'hex' in ref ? { digest: Buffer.from(ref.hex, 'hex') } : { cid: CID.parse(ref.cid) }
    const bytes = await readManifestResponse(request(this.node, this.peer, MANIFEST, [encodeManifestRequest(req)], options))
    return bytes ?? undefined
  }

  async have (manifestCid: string, chunkCount: number, options?: AbortOptions): Promise<HaveAnswer | undefined> {
    const answer = await readHaveAnswer(request(this.node, this.peer, HAVE, [encodeHaveRequest({ manifest: CID.parse(manifestCid) })], options))
    if (answer == null) return undefined
    if (answer.bitfield.size !== chunkCount) throw new ProtocolError(`${HAVE.id}: ${this.id} answered for ${answer.bitfield.size} chunks, the manifest has ${chunkCount}`)
    return { bits: answer.bitfield.bytes, fetching: answer.fetching }
  }

  async * chunks (digests: Uint8Array[], options?: AbortOptions & { urgent?: boolean }): AsyncIterable<ChunkReply> {
    for (let i = 0; i < digests.length; i += MAX_CHUNK_BATCH) {
      const batch = digests.slice(i, i + MAX_CHUNK_BATCH)
      const release = await chunkStreamSlots(this.node, this.id).acquire(options?.signal, options?.urgent === true)
      try {
        yield * readChunksResponse(batch, request(this.node, this.peer, CHUNKS, [encodeChunksRequest({ digests: batch })], options))
      } finally {
        release()
        forgetIdleSlots(this.node, this.id)
      }
    }
  }
}

/**
 * Chunk requests in flight to each peer, from all of this node's fetches together (rounds of a swarm
 * fetch, a reader's urgent chunks, profile prefetches): a peer resets the streams past its limit of
 * {@link DEFAULT_MAX_STREAMS_PER_PEER}, which would drop it as failed; past the limit, a request waits.
 */
const chunkSlots = new WeakMap<AnyLibp2p, Map<string, Slots>>()

function chunkStreamSlots (node: AnyLibp2p, peer: string): Slots {
  let byPeer = chunkSlots.get(node)
  if (byPeer == null) chunkSlots.set(node, byPeer = new Map())
  let slots = byPeer.get(peer)
  if (slots == null) byPeer.set(peer, slots = new Slots(DEFAULT_MAX_STREAMS_PER_PEER))
  return slots
}

function forgetIdleSlots (node: AnyLibp2p, peer: string): void {
  const byPeer = chunkSlots.get(node)
  if (byPeer?.get(peer)?.idle === true) byPeer.delete(peer)
}

/**
 * The neighbours that may hold an image: every connected peer that speaks the imgswarm chunk
 * protocol (identify tells which). The DHT-backed finder of the swarm replaces it.
 */
export class ConnectedHolders implements HolderFinder {
  private readonly node: AnyLibp2p
  private readonly pushed: boolean

  /** `pushed: false`: never open have-updates streams (poll `have`), as the previous release did. */
  constructor (node: AnyLibp2p, options: { pushed?: boolean } = {}) {
    this.node = node
    this.pushed = options.pushed !== false
  }

  async findHolders (): Promise<PeerSource[]> {
    const out: PeerSource[] = []
    for (const peer of this.node.getPeers()) {
      const protocols = await this.node.peerStore.get(peer).then(p => p.protocols, () => [] as string[])
      // A peer that identify says lacks have-updates (an older release) is polled instead.
      if (protocols.includes(CHUNKS.id)) out.push(new LibpPeerSource(this.node, peer, { pushed: this.pushed && protocols.includes(HAVE_UPDATES.id) }))
    }
    return out
  }
}

