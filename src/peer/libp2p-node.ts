import '../util/polyfills.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { identify, type Identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { KEEP_ALIVE } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { PeerConfigError } from '../errors.js'
import { redialBootstrap } from './bootstrap-redial.js'
import { BoundedDatastore, type DhtLimits } from './dht-bounds.js'
import { privateNetwork } from './pnet.js'
import { readGathering } from './gathered-reads.js'
import type { ConnectionGater, PeerId, PrivateKey } from './types.js'
import { windowUpdatesAtHalf } from './yamux-window.js'

/** The services every imgswarm node runs; `node.services.ping.ping(peer)` measures a round trip. */
// A type alias, not an interface: libp2p's ServiceMap needs an index signature, which aliases get implicitly.
export type PeerServices = {
  identify: Identify
  ping: Ping
  /** Kademlia on our own protocol id: provider records say who holds (or is fetching) which image. */
  dht: KadDHT
}

/** A running imgswarm libp2p node. */
export type PeerNode = Libp2p<PeerServices>

/** Yamux flow control. See {@link DEFAULT_YAMUX}. */
export interface YamuxTuning {
  /** Bytes a stream may receive before the receiver grants more. */
  initialWindow: number
  /** Upper bound the window grows to on a fast, low-latency path. */
  maxWindow: number
}

/**
 * Yamux's own defaults are a 256 KiB initial window that grows to 16 MiB. Starting at 16 MiB lets a
 * stream run at full speed from its first byte instead of after a few round trips, which matters for
 * our short chunk-batch streams (FIELD-NOTES: ~665 MiB/s against ~550–650 with the default). The
 * cost is memory: a receiver that stops reading may hold up to `maxWindow` bytes per stream.
 */
export const DEFAULT_YAMUX: Readonly<YamuxTuning> = Object.freeze({ initialWindow: 16 * 1024 * 1024, maxWindow: 16 * 1024 * 1024 })

/**
 * Loopback ranges. A connection from them comes from this machine, so it skips libp2p's per-host
 * inbound rate limit (5 connections a second from one address), which a test cluster of N nodes on
 * 127.0.0.1 exceeds at start-up. Private-range addresses are not included: a LAN is shared.
 */
const LOOPBACK_ALLOW = ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']

/** The least time the connection monitor's ping may take before the connection is judged dead. */
const PING_TIMEOUT_MS = 30_000

/** Inbound connections in their handshake at once (libp2p's default is 10); each is bounded by libp2p's 10 s upgrade timeout. */
const MAX_PENDING_INBOUND = 64

/** Concurrent ping streams allowed per connection, both ways. libp2p's connection monitor pings every connection through the same protocol every 10 s and closes the connection when its ping cannot open a stream, so ping's default of one outbound stream makes an application ping kill connections. */
const PING_STREAMS = 8

export interface PeerNodeOptions {
  /** The node's key; the PeerId derives from it. See `loadOrCreateIdentity`. */
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/4001` (`/tcp/0` picks a free port). */
  listen: string[]
  /** Addresses to tell other peers instead of the listen addresses (behind NAT, in containers). */
  announce?: string[]
  /**
   * Peers to connect to at start, as multiaddrs ending in `/p2p/<peer id>`. They are kept connected:
   * libp2p redials them when the connection drops.
   */
  bootstrap?: string[]
  /** Find and dial peers on the local network by multicast DNS (service `_imgswarm._udp.local`). Default false. */
  mdns?: boolean
  /**
   * A pre-shared key in the go-ipfs `swarm.key` format (`/key/swarm/psk/1.0.0/\n/base16/\n<64 hex>`).
   * Every byte on every connection is then encrypted with it under noise, and a peer without the same
   * key cannot connect. It halves throughput (FIELD-NOTES: ~260 against ~600 MiB/s).
   */
  swarmKey?: Uint8Array
  /**
   * Peer IDs allowed to connect, both ways. When given, connections to and from any other peer are
   * refused once its identity is known (after the encryption handshake), and dials to them are not
   * attempted. A stranger dialling in completes its own half of the handshake before we close the
   * connection, so its dial may appear to succeed; no stream can be opened on it. The node's own ID
   * need not be listed.
   */
  allowPeers?: string[]
  /** Give up a dial after this long. Default 10 s (libp2p's). */
  dialTimeoutMs?: number
  /** Most open connections. Default 300 (libp2p's). */
  maxConnections?: number
  /** Yamux windows. Default {@link DEFAULT_YAMUX}. */
  yamux?: Partial<YamuxTuning>
  /** What peers can make this node keep through the DHT. Default `DEFAULT_DHT_LIMITS` (dht-bounds.ts). */
  dhtLimits?: Partial<DhtLimits>
  /** Start listening and dialling before returning. Default true. */
  start?: boolean
}

/**
 * Creates (and by default starts) a libp2p node for imgswarm: TCP, noise, yamux, identify and ping,
 * with the discovery and isolation that `options` ask for. Loopback and private addresses are
 * dialable (libp2p's Node.js default; only its browser build refuses them).
 *
 * @example
 * const { privateKey } = await loadOrCreateIdentity(dataDir)
 * const node = await createPeerNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
 * console.log(node.peerId.toString(), node.getMultiaddrs().map(String))
 * await node.stop()
 *
 * @throws PeerConfigError when an address, the swarm key or an allowed peer ID cannot be parsed
 */
export async function createPeerNode (options: PeerNodeOptions): Promise<PeerNode> {
  const init = buildInit(options)
  const datastore = new BoundedDatastore(peerIdFromPrivateKey(options.privateKey).toString(), options.dhtLimits)
  let node: PeerNode
  try {
    node = await createLibp2p<PeerServices>({ ...init, datastore, start: false })
  } catch (err) {
    datastore.stop()
    throw new PeerConfigError(`cannot create the libp2p node: ${(err as Error).message}`, { cause: err })
  }
  datastores.set(node, datastore)
  node.addEventListener('stop', () => { datastore.stop() })
  if (options.mdns === true) dialDiscoveredPeers(node)
  if (options.bootstrap != null && options.bootstrap.length > 0) redialBootstrap(node, options.bootstrap)
  if (options.start !== false) {
    try {
      await node.start()
    } catch (err) {
      await Promise.resolve(node.stop()).catch(() => {})
      throw new PeerConfigError(`cannot start the libp2p node (listen on ${options.listen.join(', ')}): ${(err as Error).message}`, { cause: err })
    }
  }
  return node
}

const datastores = new WeakMap<PeerNode, BoundedDatastore>()

/** The bounded datastore of a node made by {@link createPeerNode}: what peers made it keep. */
export function peerDatastore (node: PeerNode): BoundedDatastore | undefined {
  return datastores.get(node)
}

function buildInit (options: PeerNodeOptions): Libp2pOptions<PeerServices> {
  const listen = options.listen.map(a => parseAddr(a, 'listen')).map(String)
  const announce = options.announce?.map(a => parseAddr(a, 'announce')).map(String)
  const boot = (options.bootstrap ?? []).map(a => {
    const ma = parseAddr(a, 'bootstrap')
    if (ma.getComponents().findLast(c => c.name === 'p2p') == null) {
      throw new PeerConfigError(`bootstrap address ${a} does not end in /p2p/<peer id>`)
    }
    return ma.toString()
  })
  windowUpdatesAtHalf()
  const window = { ...DEFAULT_YAMUX, ...options.yamux }
  if (!(window.initialWindow >= 256 * 1024 && window.maxWindow >= window.initialWindow && window.maxWindow < 2 ** 32)) {
    throw new PeerConfigError(`invalid yamux windows ${window.initialWindow}/${window.maxWindow}: need 256 KiB <= initial <= max < 4 GiB`)
  }

  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  // Tagged `keep-alive-…` so that libp2p's reconnect queue redials a bootstrap peer that drops.
  if (boot.length > 0) peerDiscovery.push(bootstrap({ list: boot, tagName: `${KEEP_ALIVE}-imgswarm-bootstrap`, timeout: 0 }))
  if (options.mdns === true) peerDiscovery.push(mdns({ serviceTag: '_imgswarm._udp.local' }))

  return {
    privateKey: options.privateKey,
    nodeInfo: { name: 'imgswarm' },
    addresses: { listen, ...(announce != null ? { announce } : {}) },
    transports: [tcp()],
    connectionEncrypters: [olderInterface<Encrypter>(noise())],
    streamMuxers: [yamux({
      streamOptions: {
        initialStreamWindowSize: window.initialWindow,
        maxStreamWindowSize: window.maxWindow,
        // A paused stream keeps receiving until the window it last granted is used up; the read
        // buffer must hold that much, or yamux resets the stream instead of applying backpressure.
        maxReadBufferLength: window.maxWindow + 1024 * 1024
      }
    })],
    // Every connection's reads gathered on slow links (gathered-reads.ts), then pnet with a swarm key.
    connectionProtector: olderInterface<Protector>(readGathering(options.swarmKey != null ? privateNetwork(options.swarmKey) : undefined)),
    ...(options.allowPeers != null ? { connectionGater: allowListGater(options.allowPeers) } : {}),
    connectionManager: {
      allow: LOOPBACK_ALLOW,
      // libp2p refuses an 11th inbound connection still in its handshake; a node of a cluster starting
      // together (15 peers dialling it at once, handshakes slow on a loaded machine) lost dials to that.
      maxIncomingPendingConnections: MAX_PENDING_INBOUND,
      ...(options.dialTimeoutMs != null ? { dialTimeout: options.dialTimeoutMs } : {}),
      ...(options.maxConnections != null ? { maxConnections: options.maxConnections } : {})
    },
    // libp2p pings every connection every 10 s and aborts it when a ping takes over 5 s. A loaded
    // machine (a cluster on 2 cores) or a shaped link with seconds of chunk data queued ahead of the
    // ping passes 5 s while the peer is alive, and the abort killed transfers and dropped cluster
    // pairs; 30 s still finds a dead peer, and our exchanges have their own frame timeouts.
    connectionMonitor: { pingTimeout: { minTimeout: PING_TIMEOUT_MS } },
    peerDiscovery,
    services: services()
  }
}

type Encrypter = NonNullable<Libp2pOptions['connectionEncrypters']>[number]
type Protector = NonNullable<Libp2pOptions['connectionProtector']>
type IdentifyFactory = NonNullable<Libp2pOptions<PeerServices>['services']>['identify']

/**
 * noise, identify and pnet are typed against the project's @libp2p/interface 3.2.5 while libp2p uses
 * 3.3.0 (see types.ts). Only the types differ; at run time they are the modules libp2p 3.3 expects.
 */
function olderInterface<T> (factory: unknown): T {
  return factory as T
}

/** The DHT's protocol id: our own network, never the public IPFS DHT. */
export const DHT_PROTOCOL = '/imgswarm/kad/1.0.0'

/** The node's services. */
function services (): NonNullable<Libp2pOptions<PeerServices>['services']> {
  return {
    identify: olderInterface<IdentifyFactory>(identify()),
    ping: ping({ maxOutboundStreams: PING_STREAMS, maxInboundStreams: PING_STREAMS }),
    dht: kadDHT({
      protocol: DHT_PROTOCOL,
      // kad-dht stays a client until it sees a public address; a cluster on private or loopback
      // addresses must serve records too.
      clientMode: false,
      // Its default mapper drops private and loopback addresses, which are all a cluster has.
      peerInfoMapper: passthroughMapper
    })
  }
}

/** A gater that admits only the listed peers, inbound and outbound. */
export function allowListGater (allowPeers: string[]): ConnectionGater {
  const allowed = new Set<string>()
  for (const text of allowPeers) {
    let id: PeerId
    try {
      id = peerIdFromString(text)
    } catch (err) {
      throw new PeerConfigError(`invalid peer ID in the allow-list: ${text}`, { cause: err })
    }
    allowed.add(id.toString())
  }
  const deny = (peer: PeerId): boolean => !allowed.has(peer.toString())
  return {
    denyDialPeer: deny,
    denyOutboundEncryptedConnection: deny,
    denyInboundEncryptedConnection: deny
  }
}

/** libp2p 3 does not dial what discovery finds; a LAN cluster wants its neighbours connected. */
function dialDiscoveredPeers (node: PeerNode): void {
  node.addEventListener('peer:discovery', evt => {
    const peer = evt.detail.id
    if (peer.equals(node.peerId) || node.getConnections(peer).length > 0) return
    void node.dial(peer).catch(() => {})
  })
}

function parseAddr (text: string, what: string): Multiaddr {
  try {
    return multiaddr(text)
  } catch (err) {
    throw new PeerConfigError(`invalid ${what} address ${text}: ${(err as Error).message}`, { cause: err })
  }
}
