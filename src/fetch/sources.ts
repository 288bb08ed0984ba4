import type { AbortOptions } from '../store/chunk-store.js'
import type { HaveFeed } from './have-feeds.js'

/** A peer's have-bitfield, and whether it is fetching the image now. */
export interface HaveAnswer {
  bits: Uint8Array
  fetching: boolean
}

/** A chunk as a source sent it: not yet verified. */
export type ChunkReply =
  | { digest: Uint8Array, bytes: Uint8Array }
  | { digest: Uint8Array, missing: true }

/**
 * A neighbour that may hold chunks, as the fetcher sees it. The libp2p implementation lives in
 * src/peer; tests may use others. Nothing a peer sends is trusted: the fetcher verifies it.
 */
export interface PeerSource {
  /** A stable id for logs and counters (the PeerId string). */
  readonly id: string
  /** The manifest bytes for an image digest (hex) or manifest CID, or undefined when the peer has none. */
  manifest: (ref: { hex: string } | { cid: string }, options?: AbortOptions) => Promise<Uint8Array | undefined>
  /**
   * Which chunk indices of the image with this manifest CID the peer holds (bit i = chunk i, most
   * significant bit first), or undefined when it does not know the manifest.
   */
  have: (manifestCid: string, chunkCount: number, options?: AbortOptions) => Promise<HaveAnswer | undefined>
  /**
   * Requests chunks by digest; replies come in request order, each with its bytes or marked missing.
   * `urgent` requests (a reader waits for them) go ahead of others waiting for a stream to the peer.
   */
  chunks: (digests: Uint8Array[], options?: AbortOptions & { urgent?: boolean }) => AsyncIterable<ChunkReply>
  /**
   * Pushed have-updates, where the peer speaks them: keeps the peer's view in `feed` current (its
   * bitfield once, then each chunk it gains) while sending it this node's, until either side is done
   * or the signal aborts. Resolves false when the peer does not know the image.
   * @throws ProtocolUnsupportedError when the peer speaks only the polled `have` (an older release)
   */
  watchHave?: (feed: HaveFeed, options?: AbortOptions) => Promise<boolean>
}

/**
 * Finds the neighbours that may hold an image. For now the connected peers that speak our protocols;
 * the DHT-backed finder of the swarm issue implements the same interface.
 */
export interface HolderFinder {
  /**
   * The holders known now of an image, named by its digest (hex) or its manifest CID. With `wait`, a
   * slower search (the DHT) is awaited first, within its time bound; without it, the search runs in
   * the background and a later call sees what it found.
   */
  findHolders: (key: string, options?: AbortOptions & { wait?: boolean }) => Promise<PeerSource[]>
}

/** Bit i of a have-bitfield: whether chunk i is held. */
export function hasBit (bits: Uint8Array, i: number): boolean {
  return ((bits[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0
}

export function setBit (bits: Uint8Array, i: number): void {
  bits[i >> 3] |= 0x80 >> (i & 7)
}
