import '../util/polyfills.js'
import { chmod, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { ApiAccess } from '../api/access.js'
import { formatApiAddress, isLocalOnly, parseApiAddress, type ApiAddress } from '../api/address.js'
import { API_TOKEN_FILE, ensureApiToken } from '../api/api-token.js'
import { readJson, sendJson, startApiServer, type ApiBackend, type ApiServer, type ApiServerOptions, type Route } from '../api/server.js'
import { parseImageNaming } from '../chunks/ref.js'
import { CacheFullError, DaemonStartingError, ImageNotFoundError, UsageError } from '../errors.js'
import { Fetcher } from '../fetch/fetcher.js'
import { GlanceImages } from '../fetch/glance-images.js'
import { GlanceOrigin } from '../origin/glance-origin.js'
import { glanceRoutes } from '../serve/glance-routes.js'
import { askGlanceAlias, GlanceAliasAnnouncer, serveGlanceAliases } from '../peer/glance-alias-protocol.js'
import { askBootProfile, serveBootProfiles } from '../peer/boot-profile-protocol.js'
import { ProfilePrefetch } from '../fetch/profile-prefetch.js'
import { BootRecorder } from '../serve/boot-recorder.js'
import { LocalNode } from '../local-node.js'
import { openOrigin } from '../origin/open-origin.js'
import type { Origin } from '../origin/origin.js'
import { loadOrCreateIdentity } from '../peer/identity.js'
import { createPeerNode, peerDatastore, type PeerNode } from '../peer/libp2p-node.js'
import { PeerLimits } from '../peer/peer-limits.js'
import type { PeerId } from '../peer/types.js'
import { burstFor, rateLimitedOrigin } from '../origin/rate-limited-origin.js'
import { observedOrigin } from '../origin/observed-origin.js'
import { TokenBucket } from '../util/token-bucket.js'
import { Announcer, DhtHolders } from '../peer/dht.js'
import { ConnectedHolders, servePeers } from '../peer/peer-service.js'
import type { Logger } from '../util/log.js'
import { lookupGroup, type UnixGroup } from '../util/unix-accounts.js'
import type { NodeConfig } from '../node/options.js'
import { prepareDataDir } from './data-dir-modes.js'
import { FetchSets } from './fetch-sets.js'
import { swarmRoutes } from './preheat-routes.js'
import { startSwarm, type Swarm } from '../swarm/swarm.js'
import type { ReplicaPolicies } from '../swarm/replica-policies.js'
import { DaemonMetrics } from './metrics.js'
import { imageExports } from '../serve/image-exports.js'
import { formatNbdAddress, parseNbdAddress, startNbdServer, type NbdServer } from '../serve/nbd-server.js'
import { ImageEvents } from '../node/image-events.js'
import { JobBoard } from '../node/job-board.js'
import { Throughput } from '../node/throughput.js'
import { OperatorView, withThroughput } from './operator-view.js'
import { PeerNames } from './peer-names.js'

import { DAEMON_FILE, type DaemonInfo } from './daemon-file.js'
import { Lifecycle } from '../node/lifecycle.js'
import type { ImageRecord } from '../store/image-record.js'
import { withDeadline } from '../util/deadline.js'

export { DAEMON_FILE, type DaemonInfo }

/** How long the health check waits for one bootstrap peer to be dialled and identified. */
const BOOTSTRAP_READY_TIMEOUT_MS = 15_000


/**
 * A running imgswarm node: the store, a libp2p peer that serves chunks to neighbours, the fetcher
 * (neighbours first, origin last) and the local HTTP API. Stop it with {@link Daemon.stop}.
 */
export class Daemon {
  readonly local: LocalNode
  readonly peer: PeerNode
  readonly fetcher: Fetcher
  readonly api: ApiServer
  readonly metrics: DaemonMetrics
  readonly origin?: Origin
  /** The NBD server (`--nbd`), unless turned off. */
  readonly nbd?: NbdServer
  private readonly log: Logger
  private ready = false
  private stopping?: Promise<void>
  /** Every part, in the order built: stopped from this list (see Lifecycle). */
  private readonly parts: Lifecycle

  /** Records boot profiles from the first reads of images (NBD, HTTP ranges). */
  readonly recorder: BootRecorder
  /** Fetches a known boot profile's chunks first. */
  readonly prefetch: ProfilePrefetch
  /** Preheats and minimum-replica policies (src/swarm). */
  readonly swarm: Swarm
  /** The cluster-wide replica policies: `replicas.protects(hex)` says whether eviction must keep an image. */
  readonly replicas: ReplicaPolicies
  /** What happens to images here: fetches begun and ended, evictions, imports. */
  readonly events: ImageEvents
  /** Fetches in flight and recent ones, with progress. */
  readonly jobs: JobBoard
  /** The node's summary, its status and job routes, and the cluster page. */
  readonly operator: OperatorView
  /** Peers' node names, shown beside their IDs. */
  readonly peerNames: PeerNames

  private constructor (parts: { local: LocalNode, peer: PeerNode, fetcher: Fetcher, api: ApiServer, metrics: DaemonMetrics, origin?: Origin, log: Logger, swarm: Swarm, nbd?: NbdServer, events: ImageEvents, jobs: JobBoard, operator: OperatorView, recorder: BootRecorder, prefetch: ProfilePrefetch, parts: Lifecycle }) {
    this.parts = parts.parts
    this.recorder = parts.recorder
    this.prefetch = parts.prefetch
    this.nbd = parts.nbd
    this.events = parts.events
    this.jobs = parts.jobs
    this.operator = parts.operator
    this.swarm = parts.swarm
    this.replicas = parts.swarm.replicas
    this.local = parts.local
    this.peer = parts.peer
    this.peerNames = new PeerNames(parts.peer)
    this.fetcher = parts.fetcher
    this.api = parts.api
    this.metrics = parts.metrics
    this.origin = parts.origin
    this.log = parts.log
  }

  /**
   * Opens the store, starts the peer and the API. `overrides.origin` replaces the configured origin
   * (programs embedding imgswarm, and tests that count origin reads).
   */
  static async start (config: NodeConfig, log: Logger, overrides: { origin?: Origin } = {}): Promise<Daemon> {
    const apiAddress = parseApiAddress(config.api)
    const nbdAddress = parseNbdAddress(config.nbd, config.data)
    const exposedAt = config.listen.filter(a => !isLoopbackMultiaddr(a))
    if (exposedAt.length > 0 && config.swarmKey == null && config.allowPeers.length === 0 && config.open !== true) {
      throw new UsageError(`listening on ${exposedAt.join(', ')} with neither --swarm-key nor --allow-peer would let any host that reaches the port read this node's images: give one of them, or --open to mean it`)
    }
    const swarmKey = config.swarmKey != null ? await readFile(config.swarmKey).catch(err => { throw new UsageError(`cannot read swarm key ${config.swarmKey ?? ''}: ${(err as Error).message}`) }) : undefined
    // Late-bound: the metrics need the store, the evictor (in the node) reports to the metrics.
    const hooks: { metrics?: DaemonMetrics, protects?: (hex: string) => boolean } = {}
    const apiGroup = config.apiGroup != null ? await lookupGroup(config.apiGroup) : undefined
    await prepareDataDir(config.data, apiGroup?.gid)
    const events = new ImageEvents(err => { log.warn('an image event listener failed', { err }) })
    const jobs = new JobBoard(log)
    const throughput = new Throughput()
    const local = await LocalNode.open({
      dir: config.data,
      cache: {
        limits: config.maxSize != null ? { maxSize: config.maxSize, highWater: config.highWater, lowWater: config.lowWater } : undefined,
        graceMs: config.evictionGraceMs,
        log,
        protects: hex => hooks.protects?.(hex) ?? false,
        onEvicted: (record, freed) => { hooks.metrics?.evictions.inc(); hooks.metrics?.evictedBytes.inc(freed); events.emit('evicted', record, { freedBytes: freed }) }
      }
    })
    // Every part is added as it is built; the same list stops them, after a failed start or at stop().
    const parts = new Lifecycle(log)
    parts.add('store', { stop: async () => { await local.close() } })
    try {
      const opened = overrides.origin ?? (config.origin != null ? await openOrigin(config.origin, { glanceTokenFile: config.glanceTokenFile }) : undefined)
      parts.add('origin', { stop: async () => { await opened?.close?.() } })
      const limited = opened != null && config.maxOriginRate != null ? rateLimitedOrigin(opened, config.maxOriginRate) : opened
      const { privateKey } = await loadOrCreateIdentity(config.data)
      const peer = await createPeerNode({
        privateKey,
        listen: config.listen,
        bootstrap: config.bootstrap,
        mdns: config.mdns,
        swarmKey,
        allowPeers: config.allowPeers.length > 0 ? config.allowPeers : undefined
      })
      parts.add('libp2p', { stop: async () => { await peer.stop() } })
      const cacheGauges = config.maxSize != null ? { used: () => local.evictor.lastUsed, cap: async () => await local.evictor.capBytes() } : undefined
      const metrics = new DaemonMetrics(local.store, () => peer.getConnections().length, cacheGauges)
      hooks.metrics = metrics
      const origin = limited != null ? observedOrigin(limited, (op, why) => { metrics.originFailed(op, why) }) : undefined
      const evictor = local.evictor
      parts.add('evictor', { start: () => { evictor.start() }, stop: async () => { evictor.stop(); await evictor.settled() } })
      const announcer = new Announcer(peer, local.store, log)
      // An image now whole here, fetched or imported: neighbours hear of it, then the cap is enforced.
      const stored = (r: ImageRecord): void => {
        void announcer.announce(r.ref.slice(7), r.manifest, r.state)
        void evictor.enforce().catch(err => { log.warn('eviction failed', { err }) })
      }
      parts.add('DHT announcer', { start: () => { announcer.start() }, stop: () => { announcer.stop() } })
      // A Glance origin names images by id: the node maps ids to sha256 and serves Glance's API.
      const aliasAnnouncer = opened instanceof GlanceOrigin ? new GlanceAliasAnnouncer(peer, local.store, opened.endpoint, log) : undefined
      if (aliasAnnouncer != null) parts.add('Glance alias announcer', { start: () => { aliasAnnouncer.start() }, stop: () => { aliasAnnouncer.stop() } })
      const glance = opened instanceof GlanceOrigin
        ? new GlanceImages(opened, local.store, {
          log,
          askPeers: async (endpoint, id, o) => await askGlanceAlias(peer, endpoint, id, o),
          onAlias: id => { void aliasAnnouncer?.announce(id) },
          admit: async image => await evictor.admit(image)
        })
        : undefined
      // Boot profiles: recorded from the first reads of an image, fetched first by the next node.
      const recorder = new BootRecorder({ profiles: local.store.bootProfiles, windowMs: config.bootProfileWindowMs, log })
      const prefetch = new ProfilePrefetch({ profiles: local.store.bootProfiles, origin, log, askPeers: async (hex, accept, signal) => await askBootProfile(peer, hex, accept, { signal }) })
      // A recording still in its window keeps what it has (a VM stopped early, or a short test).
      parts.add('boot profile recorder', { stop: async () => { await recorder.flush() } })
      parts.add('boot profile prefetch', { stop: () => { prefetch.stop() } })
      const fetcher = new Fetcher({
        glanceIds: glance != null ? async (id, o) => await glance.resolve(id, o) : undefined,
        store: local.store,
        holders: new DhtHolders(peer, new ConnectedHolders(peer), log),
        origin,
        log,
        observer: withThroughput(metrics.observer(), throughput),
        onJob: job => { jobs.add(job); prefetch.watch(job) },
        selfId: peer.peerId.toString(),
        onState: r => {
          evictor.stateChanged()
          events.emit(r.state, r)
          if (r.state === 'fetching') void announcer.announce(r.ref.slice(7), r.manifest, r.state)
          if (r.state === 'available') stored(r)
        },
        admit: async image => await evictor.admit(image).catch(err => {
          if (err instanceof CacheFullError) metrics.refusedFetches.inc()
          throw err
        })
      })
      const limits = new PeerLimits()
      const upload = config.maxUploadRate != null ? new TokenBucket(config.maxUploadRate, burstFor(config.maxUploadRate)) : undefined
      metrics.peerBoundGauges(() => peerDatastore(peer)?.counts(), () => limits.refusedRequests)
      await servePeers(peer, local.store, { log, served: bytes => { metrics.servedBytes.inc(bytes); throughput.add('served', bytes) }, haveOf: cid => fetcher.haveOf(cid), feeds: fetcher.feeds, limits, upload, inUse: local.inUse })
      if (glance != null) await serveGlanceAliases(peer, local.store, { limits, log })
      await serveBootProfiles(peer, local.store, { limits, log })
      const member = clusterMember(config, exposedAt.length > 0)
      const swarm = await startSwarm({ node: peer, store: local.store, fetcher, dataDir: config.data, replicaIntervalMs: config.replicaIntervalMs, log, member, limits })
      parts.add('swarm', { stop: swarm.stop })
      // Replicas the cluster's policy keeps here are never evicted.
      hooks.protects = hex => swarm.replicas.protects(hex)
      const ref: { daemon?: Daemon } = {}
      // The API answers before the Daemon object exists; what reaches it in between is told to retry.
      const started = (): Daemon => startedOr(ref.daemon)
      const operator = await OperatorView.start({
        name: config.name,
        ui: config.ui,
        node: peer,
        local,
        swarm,
        jobs,
        events,
        throughput,
        member,
        limits,
        log,
        nodeStatus: () => { const d = started(); return { ...d.info(), origin: d.origin?.url ?? null, ready: d.isReady, peers: d.peer.getConnections().length } }
      })
      parts.add('cluster page', { stop: async () => { await operator.stop() } })
      metrics.replicaGauges(() => swarm.replicas.active().map(p => ({ min: p.min, holders: swarm.repair.state(p.image)?.holders.length })))
      // The API starts before the Daemon object exists (it needs the bound address); routes reach it late.
      const backend: ApiBackend = {
        local,
        acquire: async (image, signal) => await started().acquire(image, signal),
        extraRoutes: [...daemonRoutes(() => ref.daemon), ...swarmRoutes(swarm, local.store), ...operator.routes(config.apiTlsCert != null)],
        selfAuthorisedRoutes: glance != null && opened instanceof GlanceOrigin
          ? glanceRoutes({ origin: opened, images: glance, local, acquire: async (image, signal) => await started().acquire(image, signal), log })
          : undefined,
        onImported: r => {
          events.emit('imported', r)
          stored(r)
        },
        importDirs: config.importDirs,
        onRangeRead: (record, manifest, offset, length) => { recorder.noteRead(record.ref.slice(7), manifest, record.manifest, offset, length) },
        onProfileRemoved: r => { recorder.forget(r.slice(7)) },
        publishOrigins: [...(config.origin != null ? [config.origin] : []), ...config.publishOrigins],
        receiving: () => new Map(jobs.current().filter(j => j.image != null && !j.hit).map(j => {
          const { local, peer, origin } = j.bytes
          return [j.image!, { bytes: local + peer + origin, local, peer, origin, ...(j.percent != null ? { percent: j.percent } : {}) }]
        }))
      }
      const guards = await apiGuards(config, apiAddress, apiGroup, log)
      const onApiError = (err: unknown): void => { log.error('API request failed', { err }) }
      const api = await startApiServer(backend, apiAddress, { ...guards, onError: onApiError })
      parts.add('API', { stop: async () => { await api.close() } })
      await operator.listen(api.address, guards.access, onApiError)
      // Images as NBD exports: the same acquire as the API's image route, so opening one starts its fetch.
      const exports = imageExports({ store: local.store, inUse: local.inUse, acquire: async (image, signal) => await started().acquire(image, signal), recorder })
      const nbd = nbdAddress == null
        ? undefined
        : await startNbdServer(exports, nbdAddress, { log, socketGid: apiGroup?.gid, groupGid: apiGroup?.gid }).catch(err => {
          // The default socket is a convenience: a data dir whose path is too long for a socket does not stop the node.
          if (config.nbd != null) throw err
          log.warn('no NBD server: the default socket cannot be made (give --nbd)', { err })
          return undefined
        })
      parts.add('NBD server', { stop: async () => { await nbd?.close() } })
      const daemon = new Daemon({ local, peer, fetcher, api, metrics, origin, log, swarm, nbd, events, jobs, operator, recorder, prefetch, parts })
      ref.daemon = daemon
      await parts.start()
      // Written last and removed first: while it exists, the CLI sends its commands to this API.
      parts.add('daemon file', { stop: async () => { await rm(join(config.data, DAEMON_FILE), { force: true }) } })
      await writePrivateFile(join(config.data, DAEMON_FILE), JSON.stringify(daemon.info()) + '\n', 0o640)
      log.info('imgswarm daemon started', { ...daemon.info(), origin: origin?.url ?? null, maxSize: await evictor.capBytes() })
      if (exposedAt.length > 0 && config.swarmKey == null && config.allowPeers.length === 0) {
        log.warn('--open: no --swarm-key and no --allow-peer, so any host that reaches the listen port can read this node\'s images', { listen: exposedAt })
      }
      void daemon.waitForBootstrap(config.bootstrap)
      void fetcher.resumeUnfinished().then(refs => { if (refs.length > 0) log.info('resuming unfinished fetches', { images: refs }) })
      return daemon
    } catch (err) {
      await parts.stop()
      throw err
    }
  }

  info (): DaemonInfo {
    return {
      pid: process.pid,
      api: formatApiAddress(this.api.address),
      peerId: this.peer.peerId.toString(),
      multiaddrs: this.peer.getMultiaddrs().map(String),
      name: this.operator.name,
      ...(this.operator.pageUrl != null ? { ui: this.operator.pageUrl } : {})
    }
  }

  /** Ready once every bootstrap peer was dialled and identified, or failed to be. */
  get isReady (): boolean {
    return this.ready
  }

  private async waitForBootstrap (addrs: string[]): Promise<void> {
    await Promise.all(addrs.map(async a => {
      try {
        const ma = multiaddr(a)
        const id = ma.getComponents().findLast(c => c.name === 'p2p')?.value
        // Listen before dialling: libp2p's own bootstrap may connect and identify the peer first.
        const identified = new Promise<void>(resolve => {
          const done = (): void => { this.peer.removeEventListener('peer:identify', onIdentify as any); clearTimeout(timer); resolve() }
          const onIdentify = (evt: CustomEvent<{ peerId: { toString: () => string } }>): void => { if (evt.detail.peerId.toString() === id) done() }
          const timer = setTimeout(done, BOOTSTRAP_READY_TIMEOUT_MS)
          this.peer.addEventListener('peer:identify', onIdentify as any)
          void this.identifiedAlready(id).then(yes => { if (yes) done() })
        })
        await withDeadline(BOOTSTRAP_READY_TIMEOUT_MS, undefined, async signal => await this.peer.dial(ma, { signal }))
        await identified
      } catch (err) {
        this.log.warn('bootstrap peer unreachable', { addr: a, err })
      }
    }))
    this.ready = true
    this.log.info('ready', { connections: this.peer.getConnections().length })
  }

  /** Whether a connected peer was already identified (the peer store knows its protocols). */
  private async identifiedAlready (id: string | undefined): Promise<boolean> {
    const conn = this.peer.getConnections().find(c => c.remotePeer.toString() === id)
    if (conn == null) return false
    const info = await this.peer.peerStore.get(conn.remotePeer).catch(() => undefined)
    return (info?.protocols.length ?? 0) > 0
  }

  /**
   * The ref a fetch of REF starts under: REF itself, or for an image's name the digest of the one
   * stored image of that name (a name says nothing a peer or origin could look up).
   * @throws ImageNotFoundError or AmbiguousRefError for a name that names no image, or several
   */
  async fetchRef (ref: string): Promise<string> {
    return parseImageNaming(ref).kind === 'name' ? (await this.local.store.resolve(ref)).ref : ref
  }

  /** The image, stored or being fetched; a fetch starts if needed. */
  async acquire (ref: string, signal: AbortSignal): Promise<Awaited<ReturnType<ApiBackend['acquire']>>> {
    const record = await this.local.store.resolve(ref).catch(err => {
      if (err instanceof ImageNotFoundError) return undefined
      throw err
    })
    if (record?.state === 'available') return { record, manifest: await this.local.store.getManifest(record) }
    const job = this.fetcher.start(await this.fetchRef(ref))
    if (!job.finished && job.streaming == null) {
      await new Promise<void>(resolve => {
        const done = (): void => { job.off('manifest', done); job.off('done', done); resolve() }
        job.once('manifest', done)
        job.once('done', done)
        signal.addEventListener('abort', done, { once: true })
      })
      signal.throwIfAborted()
    }
    if (job.finished) {
      await job.promise
      const rec = await this.local.store.resolve(job.status.image ?? ref)
      return { record: rec, manifest: await this.local.store.getManifest(rec) }
    }
    return { ...job.streaming!, job }
  }

  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping')
      await this.parts.stop()
      this.log.info('stopped')
    })()
    await this.stopping
  }
}

/**
 * Who may ask this node to preheat or set replica policies: with a swarm key every connected peer
 * holds the key; with an allow-list, the listed peers; with neither, peers are strangers, and only a
 * node that listens on loopback alone (reachable from this machine only) or was told
 * `--open-requests` takes their requests.
 */
export function clusterMember (config: NodeConfig, exposed: boolean): (peer: PeerId) => boolean {
  if (config.allowPeers.length > 0) {
    const listed = new Set(config.allowPeers.map(p => p.trim()))
    return peer => listed.has(peer.toString())
  }
  if (config.swarmKey != null || !exposed || config.openRequests === true) return () => true
  return () => false
}

/** Whether a listen multiaddr is reachable only from this machine (`/ip4/127.…`, `/ip6/::1`). */
function isLoopbackMultiaddr (addr: string): boolean {
  return /^\/ip4\/127\./.test(addr) || /^\/ip6\/::1\//.test(addr)
}

/** Writes a file whose mode does not depend on the umask. */
async function writePrivateFile (path: string, text: string, mode: number): Promise<void> {
  await writeFile(path, text, { mode })
  await chmod(path, mode)
}

/**
 * Who the API grants: root, the daemon's user and `--api-group` by the kernel's word, anyone else by
 * the token. An API beyond loopback takes only the token, and refuses to start without a token file.
 */
async function apiGuards (config: NodeConfig, address: ApiAddress, group: UnixGroup | undefined, log: Logger): Promise<Omit<ApiServerOptions, 'onError'>> {
  const exposed = !isLocalOnly(address)
  if (exposed && config.apiTokenFile == null) {
    throw new UsageError(`the API at ${formatApiAddress(address)} listens beyond loopback: give --api-token-file FILE (made when missing); every request must then carry that token`)
  }
  const token = await ensureApiToken(config.apiTokenFile ?? join(config.data, API_TOKEN_FILE), group?.gid)
  let tls: ApiServerOptions['tls']
  if (config.apiTlsCert != null || config.apiTlsKey != null) {
    if (config.apiTlsCert == null || config.apiTlsKey == null) throw new UsageError('--api-tls-cert and --api-tls-key go together')
    const read = async (path: string): Promise<Buffer> => await readFile(path).catch(err => { throw new UsageError(`cannot read ${path}: ${(err as Error).message}`) })
    tls = { cert: await read(config.apiTlsCert), key: await read(config.apiTlsKey) }
  }
  if (exposed && tls == null) log.warn('the API listens beyond loopback over plain HTTP: its token travels in clear (give --api-tls-cert and --api-tls-key)', { api: formatApiAddress(address) })
  return {
    access: new ApiAccess({ ownUid: process.getuid?.() ?? 0, groupGid: group?.gid, token, exposed }),
    tls,
    socketGid: group?.gid
  }
}

/** The daemon once it is made; before, every caller is answered 503 {@link DaemonStartingError}. */
function startedOr (daemon: Daemon | undefined): Daemon {
  if (daemon == null) throw new DaemonStartingError()
  return daemon
}

export function daemonRoutes (current: () => Daemon | undefined): Route[] {
  const daemon = (): Daemon => startedOr(current())
  const sets = new FetchSets()
  return [
    {
      method: 'POST',
      path: /^\/v1\/fetch$/,
      handle: async (req, res, _m, url) => {
        const body = await readJson(req)
        const refs: unknown = body.refs
        if (!Array.isArray(refs) || refs.length === 0 || refs.length > 64 || !refs.every(r => typeof r === 'string')) {
          throw new UsageError('POST /v1/fetch takes { "refs": [REF, …] } with 1 to 64 refs')
        }
        const d = daemon()
        const jobs = await Promise.all(refs.map(async r => d.fetcher.start(await d.fetchRef(r))))
        const id = sets.add(jobs)
        if (url.searchParams.get('wait') === 'true') await Promise.allSettled(jobs.map(async j => { await j.promise }))
        const status = sets.status(id)!
        sendJson(res, status.done ? 200 : 202, status)
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/fetch\/([0-9a-f]+)$/,
      handle: async (_req, res, m) => {
        const status = sets.status(m[1])
        if (status == null) throw new ImageNotFoundError(`no fetch ${m[1]} (finished sets are forgotten after 1000 newer ones)`)
        sendJson(res, 200, status)
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/node$/,
      handle: async (_req, res) => {
        const d = daemon()
        sendJson(res, 200, { peerId: d.peer.peerId.toString(), multiaddrs: d.peer.getMultiaddrs().map(String), api: formatApiAddress(d.api.address), nbd: d.nbd != null ? formatNbdAddress(d.nbd.address) : null, origin: d.origin?.url ?? null, ready: d.isReady })
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/peers$/,
      handle: async (_req, res) => { sendJson(res, 200, await daemon().peerNames.rows()) }
    },
    {
      method: 'GET',
      path: /^\/healthz$/,
      handle: async (_req, res) => {
        const ready = current()?.isReady ?? false
        sendJson(res, ready ? 200 : 503, { ready })
      }
    },
    {
      method: 'GET',
      path: /^\/metrics$/,
      handle: async (_req, res) => {
        const reg = daemon().metrics.registry
        const body = await reg.metrics()
        res.writeHead(200, { 'content-type': reg.contentType })
        res.end(body)
      }
    }
  ]
}
