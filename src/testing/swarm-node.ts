import type { VerifiedChunk } from '../chunks/cid.js'
import type { Clock } from '../fetch/clock.js'
import type { OriginFetchLimits } from '../fetch/origin-chunks.js'
import type { PeerSchedulerLimits } from '../fetch/peer-scheduler.js'
import { setBit, type HolderFinder } from '../fetch/sources.js'
import { swarmFetch, type SwarmLimits } from '../fetch/swarm-fetch.js'
import type { Origin } from '../origin/origin.js'
import type { Logger } from '../util/log.js'
import { wantsOf, type BuiltImage } from './memory-image.js'
import type { MemoryNetwork } from './memory-peers.js'

export interface MemoryFetchOptions {
  net: MemoryNetwork
  /** The node that fetches (added to `net` already). */
  id: string
  image: BuiltImage
  origin?: Origin
  /** Default: every node of `net` that advertises the image. */
  holders?: HolderFinder
  clock?: Clock
  signal?: AbortSignal
  limits?: Partial<SwarmLimits>
  peerLimits?: Partial<PeerSchedulerLimits>
  originLimits?: Partial<OriginFetchLimits>
  log?: Logger
  /** See SwarmFetchOptions.verifyPeerChunk. */
  verifyPeerChunk?: (expected: Uint8Array, bytes: Uint8Array) => VerifiedChunk
}

/** What one node's fetch did. */
export interface MemoryFetchResult {
  id: string
  /** When it held every chunk (the clock's time). */
  doneAt: number
  fromPeers: number
  fromOrigin: number
  badChunks: string[]
}

/**
 * One node of a {@link MemoryNetwork} fetches an image as the daemon's fetcher does: a have-feed
 * that neighbours watch, the real {@link swarmFetch}, chunks kept as they are delivered and told to
 * the feed, the feed closed (complete) at the end. The node is findable as a holder from the start,
 * as a node fetching an image is.
 */
export async function memoryFetch (o: MemoryFetchOptions): Promise<MemoryFetchResult> {
  const { net, image } = o
  const clock = o.clock ?? net.clock
  const node = net.node(o.id)
  node.know(image)
  const n = image.digests.length
  const bits = node.bitsOf(image)
  const wants = wantsOf(image).filter(w => !node.chunks.has(w.key))
  const feed = node.feeds.open(image.manifestCid, n, bits)
  net.advertise(image.hex, o.id)
  const result: MemoryFetchResult = { id: o.id, doneAt: 0, fromPeers: 0, fromOrigin: 0, badChunks: [] }
  let ok = false
  try {
    await swarmFetch({
      self: o.id,
      hex: image.hex,
      manifestCid: image.manifestCid,
      chunkCount: n,
      wants,
      holders: o.holders ?? net.holders(o.id),
      feed,
      origin: o.origin,
      deliver: async (chunks, ws) => {
        node.put(chunks)
        const indices = ws.flatMap(w => w.indices)
        for (const i of indices) setBit(bits, i)
        feed.stored(indices)
      },
      received: (source, bytes) => { if (source === 'peer') result.fromPeers += bytes; else result.fromOrigin += bytes },
      badChunk: peer => { result.badChunks.push(peer) },
      signal: o.signal ?? new AbortController().signal,
      limits: o.limits,
      peerLimits: o.peerLimits,
      originLimits: o.originLimits,
      clock,
      log: o.log,
      verifyPeerChunk: o.verifyPeerChunk
    })
    ok = true
  } finally {
    node.feeds.close(feed, ok)
  }
  result.doneAt = clock.now()
  return result
}
