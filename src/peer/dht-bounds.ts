import { MemoryDatastore } from 'datastore-core/memory'
import { Key, type Pair, type Query } from 'interface-datastore'
import { PeerLimitError } from '../errors.js'

/*
 * What other peers can make this node keep through libp2p's datastore. kad-dht 16 stores every
 * ADD_PROVIDER it accepts under `/dht/provider/<cid>/<peer>` and every PUT_VALUE under `/dht/record/…`,
 * without any bound or expiry (its PROVIDERS_VALIDITY is only read by its own reprovider), and the
 * peer store keeps the addresses each ADD_PROVIDER carries, merged into the sender's record without
 * a bound. In libp2p's default in-memory datastore all of it stays until the process ends: measured
 * (bench/dht-flood.ts), ~40,000 provider records from one peer took ~30 MB of heap, and 1,600
 * messages with a new address each made the sender's peer record 1,600 addresses long (every merge
 * re-sorts and re-encodes the whole list, so the cost grows with its square).
 *
 * This datastore bounds all three where they are written, whoever writes them.
 */

/** Bounds on what peers can make a node keep. See {@link DEFAULT_DHT_LIMITS}. */
export interface DhtLimits {
  /** Provider records one peer may have here (2 per image it holds: image and manifest CIDs). */
  providersPerPeer: number
  /** Provider records from all peers together (this node's own are not counted). */
  providersTotal: number
  /** DHT value records (PUT_VALUE) from all peers together; imgswarm itself stores none. */
  valueRecords: number
  /** A provider or value record not refreshed within this many ms is dropped. */
  ttlMs: number
  /** How often expired records are swept out, in ms. */
  sweepMs: number
  /** Largest peer-store record (a peer's addresses and protocols), in bytes. */
  maxPeerRecordBytes: number
}

/**
 * 4,096 records per peer is 2,048 images per holder; 32,768 in all is ~25 MB at the ~700 bytes of heap
 * a record takes. Records live 48 h, as in kad-dht's own validity: its reprovider refreshes ours every
 * 24 h. A peer record of 16 KiB holds a few hundred addresses; an honest one has a handful.
 */
export const DEFAULT_DHT_LIMITS: Readonly<DhtLimits> = Object.freeze({
  providersPerPeer: 4096,
  providersTotal: 32_768,
  valueRecords: 1024,
  ttlMs: 48 * 3_600_000,
  sweepMs: 10 * 60_000,
  maxPeerRecordBytes: 16 * 1024
})

const PROVIDER_PREFIX = '/dht/provider/'
const RECORD_PREFIX = '/dht/record/'
const PEER_PREFIX = '/peers/'

/** What the datastore holds for peers, for metrics and tests. */
export interface DhtCounts {
  providers: number
  /** Provider records of the peer that holds the most. */
  maxPerPeer: number
  valueRecords: number
  /** Writes refused since start: over a bound, or a peer record too large. */
  refused: number
  /** Records dropped because they expired. */
  expired: number
}

/**
 * libp2p's in-memory datastore with {@link DhtLimits}: a provider record past its peer's share or
 * the total, a value record past the total, or a peer-store record over its size is refused with a
 * {@link PeerLimitError} (kad-dht then resets the sender's stream); refreshing a record already held is
 * always allowed. Call {@link BoundedDatastore.stop} to end the sweep timer.
 */
export class BoundedDatastore extends MemoryDatastore {
  readonly limits: Readonly<DhtLimits>
  private readonly self: string
  /** Provider and value keys → when they were last written, and by which provider. */
  private readonly written = new Map<string, { at: number, peer?: string }>()
  private readonly perPeer = new Map<string, number>()
  private providers = 0
  private values = 0
  private refused = 0
  private expired = 0
  private timer?: NodeJS.Timeout

  /** `self`: this node's peer ID; its own provider records are neither bounded nor counted. */
  constructor (self: string, limits: Partial<DhtLimits> = {}) {
    super()
    this.self = self
    this.limits = { ...DEFAULT_DHT_LIMITS, ...limits }
    this.timer = setInterval(() => { this.sweep() }, this.limits.sweepMs)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  counts (): DhtCounts {
    let maxPerPeer = 0
    for (const n of this.perPeer.values()) maxPerPeer = Math.max(maxPerPeer, n)
    return { providers: this.providers, maxPerPeer, valueRecords: this.values, refused: this.refused, expired: this.expired }
  }

  override put (key: Key, val: Uint8Array, options?: { signal?: AbortSignal }): Key | Promise<Key> {
    const k = key.toString()
    if (k.startsWith(PROVIDER_PREFIX)) this.admitProvider(k)
    else if (k.startsWith(RECORD_PREFIX)) this.admitValue(k)
    else if (k.startsWith(PEER_PREFIX) && val.length > this.limits.maxPeerRecordBytes) {
      this.refused++
      throw new PeerLimitError(`peer record ${k.slice(PEER_PREFIX.length)} of ${val.length} bytes exceeds ${this.limits.maxPeerRecordBytes}: too many addresses`)
    }
    return super.put(key, val, options)
  }

  override delete (key: Key, options?: { signal?: AbortSignal }): void | Promise<void> {
    this.forget(key.toString())
    return super.delete(key, options)
  }

  /** Hides records past their time until the next sweep removes them. */
  override * _all (q: Query, options?: { signal?: AbortSignal }): Generator<Pair> {
    const oldest = Date.now() - this.limits.ttlMs
    for (const pair of super._all(q, options) as Generator<Pair>) {
      const w = this.written.get(pair.key.toString())
      if (w == null || w.at >= oldest) yield pair
    }
  }

  /** Drops every provider and value record not written within the time to live. */
  sweep (): number {
    const oldest = Date.now() - this.limits.ttlMs
    let n = 0
    for (const [k, w] of this.written) {
      if (w.at >= oldest) continue
      this.forget(k)
      void super.delete(new Key(k))
      n++
    }
    this.expired += n
    return n
  }

  private admitProvider (k: string): void {
    const peer = k.slice(k.lastIndexOf('/') + 1)
    const known = this.written.get(k)
    if (known != null) {
      known.at = Date.now()
      return
    }
    if (peer !== this.self) {
      const mine = this.perPeer.get(peer) ?? 0
      if (mine >= this.limits.providersPerPeer) {
        this.refused++
        throw new PeerLimitError(`peer ${peer} already has ${mine} provider records here, the most one peer may have`)
      }
      if (this.providers >= this.limits.providersTotal) {
        this.refused++
        throw new PeerLimitError(`this node already keeps ${this.providers} provider records, the most it keeps from peers`)
      }
      this.perPeer.set(peer, mine + 1)
      this.providers++
    }
    this.written.set(k, { at: Date.now(), peer })
  }

  private admitValue (k: string): void {
    const known = this.written.get(k)
    if (known != null) {
      known.at = Date.now()
      return
    }
    if (this.values >= this.limits.valueRecords) {
      this.refused++
      throw new PeerLimitError(`this node already keeps ${this.values} DHT value records, the most it keeps`)
    }
    this.values++
    this.written.set(k, { at: Date.now() })
  }

  private forget (k: string): void {
    const w = this.written.get(k)
    if (w == null) return
    this.written.delete(k)
    if (w.peer == null) {
      this.values--
    } else if (w.peer !== this.self) {
      this.providers--
      const left = (this.perPeer.get(w.peer) ?? 1) - 1
      if (left === 0) this.perPeer.delete(w.peer)
      else this.perPeer.set(w.peer, left)
    }
  }
}
