import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import type { HolderFinder, PeerSource } from '../fetch/sources.js'
import type { AbortOptions } from '../store/chunk-store.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import type { ConnectedHolders } from './peer-service.js'
import type { AnyLibp2p } from './types.js'
import { withDeadline } from '../util/deadline.js'

/** The DHT key for an image: the CIDv1 (raw, sha2-256) of its whole content, i.e. of its sha256. */
export function imageCid (hex: string): CID {
  return CID.createV1(raw.code, Digest.create(sha256Hasher.code, Buffer.from(hex, 'hex')))
}

/** How long one provider lookup or announcement may take before it is given up. */
const DHT_QUERY_MS = 5_000
/** Providers dialled per lookup: enough for a swarm, bounded so a flood of records costs little. */
const MAX_PROVIDERS = 32
/** Lookups for the same image within this time reuse the last answer. */
const LOOKUP_CACHE_MS = 2_000
/**
 * A lookup that found no provider not already connected doubles that time, up to this: every node of
 * a swarm asks every 2 s while it fetches, and each query and its answers cost every node on its path
 * CPU (peer-store merges of the closer peers) that the transfer needs.
 */
const MAX_LOOKUP_CACHE_MS = 30_000
/** Images whose lookup spacing is remembered. */
const MAX_KEYS = 1024

/**
 * Tells the DHT which images this node holds or is fetching, under the image CID and the manifest
 * CID. An image is announced as soon as its fetch starts (so that nodes starting together find each
 * other), again when it is complete, and every image in the store is announced at start and by a sweep
 * every 10 s; kad-dht's reprovider refreshes the records before they expire (its default: records
 * live 48 h and are re-published well before).
 */
export class Announcer {
  private readonly announced = new Map<string, string>()
  private timer?: NodeJS.Timeout
  private readonly node: AnyLibp2p
  private readonly store: LevelStore
  private readonly log: Logger

  constructor (node: AnyLibp2p, store: LevelStore, log: Logger = silentLogger) {
    this.node = node
    this.store = store
    this.log = log
  }

  start (): void {
    void this.sweep()
    this.timer = setInterval(() => { void this.sweep() }, 10_000)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /** Announces an image (again, when its state changed). */
  async announce (hex: string, manifestCid: string, state: string): Promise<void> {
    if (this.announced.get(hex) === state) return
    this.announced.set(hex, state)
    await withDeadline(DHT_QUERY_MS, undefined, async signal => await Promise.all([imageCid(hex), CID.parse(manifestCid)].map(async cid => {
      await this.node.contentRouting.provide(cid, { signal }).catch((err: unknown) => {
        this.log.debug('DHT announce failed (no DHT peers yet?)', { cid: cid.toString(), err })
        this.announced.delete(hex) // the next sweep tries again
      })
    })))
  }

  private async sweep (): Promise<void> {
    try {
      for (const r of await this.store.listImages()) {
        if (r.state !== 'failed') await this.announce(r.ref.slice(7), r.manifest, r.state)
      }
    } catch (err) {
      this.log.debug('DHT announce sweep failed', { err })
    }
  }
}

/**
 * The holders of an image: the connected peers, plus the providers the DHT knows for the image, which
 * are dialled. A node thus finds holders it was never told about.
 */
export class DhtHolders implements HolderFinder {
  private readonly node: AnyLibp2p
  private readonly connected: Pick<ConnectedHolders, 'findHolders'>
  private readonly log: Logger
  /** By key: when the next lookup may run, and the wait after it if it finds nobody new. */
  private readonly recent = new Map<string, { next: number, spacing: number }>()
  private readonly inflight = new Map<string, Promise<void>>()

  constructor (node: AnyLibp2p, connected: Pick<ConnectedHolders, 'findHolders'>, log: Logger = silentLogger) {
    this.node = node
    this.connected = connected
    this.log = log
  }

  /** `key` is an image digest (hex) or a manifest CID: both are announced (see {@link Announcer}). */
  async findHolders (key: string, options?: AbortOptions & { wait?: boolean }): Promise<PeerSource[]> {
    let lookup = this.inflight.get(key)
    const last = this.recent.get(key)
    if (lookup == null && Date.now() >= (last?.next ?? 0)) {
      // Too many keys remembered (one per image looked up): forget the oldest.
      if (last == null && this.recent.size >= MAX_KEYS) this.recent.delete(this.recent.keys().next().value as string)
      lookup = this.dialProviders(key).then(
        found => { this.spaceOut(key, found > 0 ? LOOKUP_CACHE_MS : Math.min(MAX_LOOKUP_CACHE_MS, 2 * (last?.spacing ?? LOOKUP_CACHE_MS / 2))) },
        (err: unknown) => { this.spaceOut(key, LOOKUP_CACHE_MS); this.log.debug('DHT provider lookup failed', { key, err }) })
        .finally(() => { this.inflight.delete(key) })
      this.inflight.set(key, lookup)
    }
    // With no connection the DHT cannot answer; do not wait out its time bound for nothing.
    if (options?.wait === true && lookup != null && this.node.getConnections().length > 0) await lookup
    return await this.connected.findHolders()
  }

  private spaceOut (key: string, spacing: number): void {
    this.recent.delete(key)
    this.recent.set(key, { next: Date.now() + spacing, spacing })
  }

  /** Dials the providers not connected yet; resolves to how many there were. */
  private async dialProviders (key: string): Promise<number> {
    const cid = /^[0-9a-f]{64}$/.test(key) ? imageCid(key) : CID.parse(key)
    return await withDeadline(DHT_QUERY_MS, undefined, async signal => {
      const dials: Array<Promise<unknown>> = []
      let n = 0
      for await (const provider of this.node.contentRouting.findProviders(cid, { signal })) {
        if (provider.id.equals(this.node.peerId) || this.node.getConnections(provider.id).length > 0) continue
        if (provider.multiaddrs.length > 0) await this.node.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => {})
        dials.push(this.node.dial(provider.id, { signal }).catch(() => {}))
        if (++n >= MAX_PROVIDERS) break
      }
      await Promise.all(dials)
      return n
    })
  }
}
