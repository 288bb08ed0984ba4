import type { Fetcher } from '../fetch/fetcher.js'
import type { PeerLimits } from '../peer/peer-limits.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { serveHolds } from './holds.js'
import { PolicySync } from './policy-sync.js'
import { servePreheat } from './preheat-peer.js'
import { Preheats } from './preheat.js'
import { ReplicaPolicies } from './replica-policies.js'
import { ReplicaRepair } from './replica-repair.js'

import { DEFAULT_REPLICA_INTERVAL_MS } from './defaults.js'

export { DEFAULT_REPLICA_INTERVAL_MS }

export interface SwarmOptions {
  node: AnyLibp2p
  store: LevelStore
  fetcher: Fetcher
  /** The data dir, where `replicas.json` lives. */
  dataDir: string
  /** Period of repair rounds and anti-entropy. Default {@link DEFAULT_REPLICA_INTERVAL_MS}. */
  replicaIntervalMs?: number
  log?: Logger
  /**
   * Whether a peer belongs to the cluster: only members' preheat requests and replica policies are
   * taken (see docs/security.md). Default: every peer.
   */
  member?: (peer: PeerId) => boolean
  /** The node's per-peer request rate, shared with its other protocols. */
  limits?: PeerLimits
}

/** Seeding across the swarm: preheats, and the minimum-replica policies with their spreading and repair. */
export interface Swarm {
  preheats: Preheats
  replicas: ReplicaPolicies
  repair: ReplicaRepair
  sync: PolicySync
  stop: () => Promise<void>
}

/** Loads the policies, registers the preheat and policy protocols, and starts the repair loop. */
export async function startSwarm (options: SwarmOptions): Promise<Swarm> {
  const { node, store, fetcher } = options
  const log = options.log ?? silentLogger
  const intervalMs = options.replicaIntervalMs ?? DEFAULT_REPLICA_INTERVAL_MS
  const replicas = await ReplicaPolicies.open(options.dataDir, node.peerId.toString(), log)
  const { member, limits } = options
  await servePreheat(node, fetcher, { log, member, limits })
  await serveHolds(node, store, log, limits)
  const preheats = new Preheats({ node, fetcher, store, log })
  const sync = new PolicySync({ node, policies: replicas, intervalMs, log, member, limits })
  await sync.start()
  const repair = new ReplicaRepair({ node, store, fetcher, policies: replicas, intervalMs, log })
  repair.start()
  return {
    preheats,
    replicas,
    repair,
    sync,
    stop: async () => {
      preheats.stop()
      sync.stop()
      await repair.stop()
      await replicas.flush()
    }
  }
}
