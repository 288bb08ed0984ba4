import { EventEmitter } from 'node:events'
import type { Manifest } from '../chunks/manifest.js'
import type { ImageRecord } from '../store/image-record.js'
import { Demand } from './demand.js'

export type FetchSource = 'local' | 'peer' | 'origin'
/**
 * Where the manifest being fetched by came from: the origin, the manifest CID the caller named, the
 * store (a fetch resumed), or a peer that only vouches for itself.
 */
export type ManifestTrust = 'origin' | 'named' | 'store' | 'peer'

export type FetchState = 'resolving' | 'fetching' | 'verifying' | 'available' | 'failed'

/** What a fetch reports: per image, its state and the bytes that came from each source. */
export interface FetchStatus {
  /** The ref as asked. */
  ref: string
  /** `sha256:<hex>` once known. */
  image?: string
  state: FetchState
  size?: number
  bytes: Record<FetchSource, number>
  /** Chunk verification failures (peers dropped for this fetch). */
  badChunks: number
  /** The image was already stored: nothing was fetched (its size shows under `local`). */
  hit?: boolean
  /** The boot profile fetched first: how many chunks, and where it came from. */
  profile?: { chunks: number, from: 'store' | 'peer' | 'origin' }
  /** Why the fetch waits before it starts (near the cache cap, for busy images to become evictable). */
  waiting?: string
  error?: string
  started: string
  finished?: string
}

/**
 * One image being fetched. Several requests for the same image share it. Emits `verified` (a chunk's
 * indices and bytes, the moment it is verified) and `chunks` (indices now stored) so that a reader can
 * stream the image as it arrives, and `done` when it ends either way.
 */
export class FetchJob extends EventEmitter {
  readonly status: FetchStatus
  readonly promise: Promise<void>
  private settle!: { resolve: () => void, reject: (err: unknown) => void }

  constructor (ref: string) {
    super()
    this.setMaxListeners(1000)
    this.status = { ref, state: 'resolving', bytes: { local: 0, peer: 0, origin: 0 }, badChunks: 0, started: new Date().toISOString() }
    this.promise = new Promise<void>((resolve, reject) => { this.settle = { resolve, reject } })
    this.promise.catch(() => {}) // observed by whoever awaits it
  }

  /** Chunks readers wait for (an NBD export, an HTTP range): the fetch takes them first. */
  readonly demand = new Demand()

  /** Where the manifest came from, set with it: reads before the whole-image check need a trusted one. */
  trust?: ManifestTrust
  /** Asks the origin whether it has this very manifest (a peer's claim confirmed); false when it cannot say. */
  confirmManifest?: () => Promise<boolean>

  /** Set once the manifest is stored and chunks start to arrive; readers may then stream the image. */
  streaming?: { record: ImageRecord, manifest: Manifest }

  /**
   * The manifest whose whole image the fetch hashed and found right (the very object it streamed
   * under): a reader that streamed under another one, a claim that proved false, must not end cleanly.
   */
  verified?: Manifest

  manifestKnown (record: ImageRecord, manifest: Manifest): void {
    this.streaming = { record, manifest }
    this.emit('manifest')
  }

  /**
   * Which chunks of the image are stored (bit i = chunk i), kept as chunks arrive so that neighbours
   * polling this node's have-bitfield while it fetches get an answer without a store scan.
   */
  have?: Uint8Array

  /** A chunk verified on arrival, before it is stored: a reader streaming the image may send it now. */
  chunkVerified (indices: number[], bytes: Uint8Array): void {
    this.emit('verified', indices, bytes)
  }

  chunksStored (indices: number[]): void {
    if (this.have != null) for (const i of indices) this.have[i >> 3] |= 0x80 >> (i & 7)
    this.emit('chunks', indices)
  }

  succeed (): void {
    this.status.state = 'available'
    this.status.finished = new Date().toISOString()
    this.emit('done')
    this.settle.resolve()
  }

  fail (err: unknown): void {
    this.status.state = 'failed'
    this.status.error = (err as Error)?.message ?? String(err)
    this.status.finished = new Date().toISOString()
    this.emit('done')
    this.settle.reject(err)
  }

  get finished (): boolean {
    return this.status.finished !== undefined
  }
}
