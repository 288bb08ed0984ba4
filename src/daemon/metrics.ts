import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { VERSION } from '../node/build-info.js'
import type { DhtCounts } from '../peer/dht-bounds.js'
import type { FetchObserver } from '../fetch/fetcher.js'
import type { LevelStore } from '../store/level-store.js'

/**
 * The daemon's Prometheus metrics. Label sets are bounded: sources, outcomes and states are fixed
 * lists, and nothing is labelled per peer or per image.
 */
export class DaemonMetrics {
  readonly registry = new Registry()
  readonly fetchedBytes = new Counter({ name: 'imgswarm_fetched_bytes_total', help: 'Bytes received for image fetches by source (peers\' manifests included, used or not); local counts bytes already stored; origin counts image bytes only', labelNames: ['source'] as const, registers: [this.registry] })
  readonly originMetadataBytes = new Counter({ name: 'imgswarm_origin_metadata_bytes_total', help: 'Bytes read from the origin that are not image bytes: manifests, read to fetch by or to check a peer\'s claim', registers: [this.registry] })
  readonly lyingPeers = new Counter({ name: 'imgswarm_lying_peers_total', help: 'Times a peer was caught lying about an image (a manifest that does not make the image, or that the origin contradicts); it is then not asked for an hour', registers: [this.registry] })
  readonly badChunks = new Counter({ name: 'imgswarm_chunk_verification_failures_total', help: 'Chunks received from peers that did not match their CID', registers: [this.registry] })
  readonly fetchDuration = new Histogram({ name: 'imgswarm_fetch_duration_seconds', help: 'Time to make an image available, by outcome', labelNames: ['outcome'] as const, buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600], registers: [this.registry] })
  readonly cache = new Counter({ name: 'imgswarm_cache_requests_total', help: 'Image requests answered from the local store (hit) or needing a fetch (miss)', labelNames: ['result'] as const, registers: [this.registry] })
  readonly servedBytes = new Counter({ name: 'imgswarm_served_bytes_total', help: 'Chunk and manifest bytes sent to peers', registers: [this.registry] })
  readonly evictions = new Counter({ name: 'imgswarm_evictions_total', help: 'Images evicted to keep the store under its --max-size', registers: [this.registry] })
  readonly evictedBytes = new Counter({ name: 'imgswarm_evicted_bytes_total', help: 'Chunk bytes that evictions freed (shared chunks other images keep are not counted)', registers: [this.registry] })
  readonly refusedFetches = new Counter({ name: 'imgswarm_cache_full_refusals_total', help: 'Fetches refused because the image did not fit under --max-size even after eviction', registers: [this.registry] })

  constructor (store: LevelStore, peersConnected: () => number, cache?: { used: () => number, cap: () => Promise<number | null> }) {
    // Process and Node.js metrics (CPU, resident memory, open descriptors, event loop lag, heap, GC).
    collectDefaultMetrics({ register: this.registry })
    new Gauge({ name: 'imgswarm_build_info', help: 'Always 1; the labels say which imgswarm and Node.js run', labelNames: ['version', 'node'] as const, registers: [this.registry] })
      .set({ version: VERSION, node: process.version }, 1)
    for (const source of ['local', 'peer', 'origin']) this.fetchedBytes.inc({ source }, 0)
    for (const result of ['hit', 'miss']) this.cache.inc({ result }, 0)
    const registry = this.registry
    new Gauge({
      name: 'imgswarm_store_disk_bytes',
      help: 'Bytes of the store\'s files on disk',
      registers: [registry],
      async collect () { this.set((await store.diskUsage())?.store ?? 0) }
    })
    new Gauge({
      name: 'imgswarm_images',
      help: 'Images in the store by state',
      labelNames: ['state'] as const,
      registers: [registry],
      async collect () {
        const counts: Record<string, number> = { available: 0, fetching: 0, failed: 0 }
        for (const r of await store.listImages()) counts[r.state]++
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n)
      }
    })
    if (cache != null) {
      new Gauge({
        name: 'imgswarm_cache_used_bytes',
        help: 'Distinct chunk bytes that stored images name, as of the last eviction check (every 10 s); while the sum of image sizes stays below the high watermark, that sum (an upper bound)',
        registers: [registry],
        collect () { this.set(cache.used()) }
      })
      new Gauge({
        name: 'imgswarm_cache_cap_bytes',
        help: 'The --max-size cap in bytes',
        registers: [registry],
        async collect () { this.set((await cache.cap()) ?? 0) }
      })
    }
    new Gauge({
      name: 'imgswarm_peers_connected',
      help: 'Peers with an open connection',
      registers: [registry],
      collect () { this.set(peersConnected()) }
    })
  }

  /**
   * Gauges of the cluster's replica policies as this node sees them: how many are in force, and how
   * many had fewer live holders than their minimum at the last repair round (a repair under way, or
   * one that cannot be made: too few live nodes).
   */
  replicaGauges (policies: () => Array<{ min: number, holders?: number }>): void {
    new Gauge({
      name: 'imgswarm_replica_policies',
      help: 'Minimum-replica policies in force',
      registers: [this.registry],
      collect () { this.set(policies().length) }
    })
    new Gauge({
      name: 'imgswarm_replica_policies_short',
      help: 'Replica policies whose image had fewer live holders than its minimum at the last repair round',
      registers: [this.registry],
      collect () { this.set(policies().filter(p => p.holders != null && p.holders < p.min).length) }
    })
  }

  /**
   * What peers made this node keep or were refused: DHT provider records held for peers (and the most
   * any one peer has), DHT writes refused for a bound, and requests refused for a peer's rate.
   */
  peerBoundGauges (dht: () => DhtCounts | undefined, refusedRequests: () => number): void {
    new Gauge({
      name: 'imgswarm_dht_provider_records',
      help: 'DHT provider records kept for other peers (bounded per peer and in total; this node\'s own not counted)',
      labelNames: ['of'] as const,
      registers: [this.registry],
      collect () {
        const c = dht()
        this.set({ of: 'all' }, c?.providers ?? 0)
        this.set({ of: 'top-peer' }, c?.maxPerPeer ?? 0)
      }
    })
    new Gauge({
      name: 'imgswarm_dht_refused_total',
      help: 'DHT writes refused because a peer or the node was at its bound (provider and value records, oversized peer records)',
      registers: [this.registry],
      collect () { this.set(dht()?.refused ?? 0) }
    })
    new Gauge({
      name: 'imgswarm_peer_requests_refused_total',
      help: 'Requests on the imgswarm protocols refused because the peer was over its rate',
      registers: [this.registry],
      collect () { this.set(refusedRequests()) }
    })
  }

  /** The hooks the fetcher reports through. */
  observer (): FetchObserver {
    return {
      received: (source, bytes) => { this.fetchedBytes.inc({ source }, bytes) },
      originMetadata: bytes => { this.originMetadataBytes.inc(bytes) },
      badChunk: () => { this.badChunks.inc() },
      lyingPeer: () => { this.lyingPeers.inc() },
      cache: hit => { this.cache.inc({ result: hit ? 'hit' : 'miss' }) },
      finished: (outcome, seconds) => { this.fetchDuration.observe({ outcome }, seconds) }
    }
  }
}
