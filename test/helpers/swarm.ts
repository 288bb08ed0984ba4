import type { NodeConfig } from '../../src/node/options.js'
import type { Origin } from '../../src/origin/origin.js'
import { livePeers } from '../../src/swarm/live-peers.js'
import { POLICY } from '../../src/swarm/policy-protocol.js'
import { startDaemon, type TestDaemon } from './daemons.js'
import { waitFor } from './failure.js'

interface Teardown { teardown: (fn: () => Promise<void> | void) => void }

/** Polls `check` every 100 ms until it is true; throws naming `what` after `timeoutMs`. */
export async function until (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  if (!(await waitFor(check, timeoutMs, 100))) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
}

/** Whether every daemon sees every other one as a live imgswarm peer (connected and identified). */
export async function fullMesh (nodes: TestDaemon[]): Promise<boolean> {
  for (const n of nodes) {
    const live = new Set((await livePeers(n.daemon.peer, POLICY.id)).map(String))
    if (!nodes.every(o => o === n || live.has(o.daemon.peer.peerId.toString()))) return false
  }
  return true
}

/**
 * Starts `n` daemons on 127.0.0.1, each bootstrapped from every one started before it, and waits
 * until each sees all the others: the "live nodes" that node choice and repair rank are then the
 * same on every node. All are stopped at teardown.
 */
export async function startMesh (t: Teardown, n: number, options: { origin?: Origin, config?: Partial<NodeConfig> } = {}): Promise<TestDaemon[]> {
  const nodes: TestDaemon[] = []
  for (let i = 0; i < n; i++) nodes.push(await startDaemon(t, { ...options, bootstrap: nodes.map(d => d.addr) }))
  await until('a full mesh', async () => await fullMesh(nodes))
  return nodes
}

/** Starts a daemon again on an existing data dir (same peer ID, same replicas.json); stopped at teardown. */
export async function restartDaemon (t: Teardown, dir: string, options: { bootstrap?: string[], config?: Partial<NodeConfig> } = {}): Promise<TestDaemon> {
  return await startDaemon(t, { ...options, dir })
}

/** Whether the daemon holds the image, complete and checked. */
export async function holds (d: TestDaemon, ref: string): Promise<boolean> {
  return await d.daemon.local.store.resolve(ref).then(r => r.state === 'available', () => false)
}
