import '../../src/util/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createPeerNode, type PeerNode, type PeerNodeOptions } from '../../src/peer/libp2p-node.js'

/** Options for each spawned node; `privateKey` and `listen` default to a fresh key and 127.0.0.1:0. */
export type SpawnOptions = Partial<PeerNodeOptions> & {
  /** Dial every node from every earlier one (a full mesh) before returning. Default false. With a function for `opts`, its value for node 0 decides. */
  connect?: boolean
}

interface Teardown { teardown: (fn: () => Promise<void> | void) => void }

/**
 * Starts `n` real libp2p nodes in this process, listening on 127.0.0.1 at free ports, and stops
 * them when the test ends (whatever its outcome). `opts` may be a function of the node's index.
 */
export async function spawnPeers (t: Teardown, n: number, opts: SpawnOptions | ((i: number) => SpawnOptions) = {}): Promise<PeerNode[]> {
  const nodes: PeerNode[] = []
  t.teardown(async () => { await stopAll(nodes) })
  for (let i = 0; i < n; i++) {
    const { connect: _connect, ...o } = typeof opts === 'function' ? opts(i) : opts
    nodes.push(await createPeerNode({
      privateKey: o.privateKey ?? await generateKeyPair('Ed25519'),
      listen: o.listen ?? ['/ip4/127.0.0.1/tcp/0'],
      ...o
    }))
  }
  const connect = typeof opts === 'function' ? opts(0).connect : opts.connect
  if (connect === true) {
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) await nodes[i].dial(nodes[j].getMultiaddrs())
    }
  }
  return nodes
}

/** Stops nodes in parallel; a node that does not stop within 10 s is left (and reported) rather than hanging the run. */
export async function stopAll (nodes: PeerNode[]): Promise<void> {
  const results = await Promise.allSettled(nodes.map(async node => {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`node ${node.peerId.toString()} did not stop in 10 s`)), 10_000) })
    try {
      await Promise.race([node.stop(), timeout])
    } finally {
      clearTimeout(timer)
    }
  }))
  const failed = results.find(r => r.status === 'rejected')
  if (failed != null) throw (failed as PromiseRejectedResult).reason
}

/** Resolves when `fn` returns true, polling every 20 ms; rejects after `ms`. */
export async function waitFor (fn: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
