import '../src/util/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createPeerNode } from '../src/peer/libp2p-node.js'
import { spamProviders } from '../test/helpers/dht-spam.js'

/*
 * Where a flood of DHT provider records goes in a node's memory: one hostile peer sends ADD_PROVIDER
 * messages for fresh CIDs; the target's heap (after gc), its datastore keys by prefix and the number of
 * addresses its peer store holds for the sender are printed after each round.
 * Run: `npx tsc -p tsconfig.json && node --expose-gc dist/bench/dht-flood.js [rounds] [per round] [addrs per message] [fresh|same]`
 */

const rounds = Number(process.argv[2] ?? 4)
const perRound = Number(process.argv[3] ?? 25_000)
const addrs = Number(process.argv[4] ?? 1)
const fresh = process.argv[5] !== 'same'

async function main (): Promise<void> {
  const target = await createPeerNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const evil = await createPeerNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const datastore = (target as any).components.datastore
  const measure = async (label: string): Promise<void> => {
    (globalThis as any).gc?.()
    const counts = new Map<string, number>()
    let keyBytes = 0
    let valueBytes = 0
    for await (const { key, value } of datastore.query({})) {
      const prefix = key.toString().split('/').slice(0, 3).join('/')
      counts.set(prefix, (counts.get(prefix) ?? 0) + 1)
      keyBytes += key.toString().length
      valueBytes += value.length
    }
    const peer = await target.peerStore.get(evil.peerId).catch(() => undefined)
    const m = process.memoryUsage()
    console.log(JSON.stringify({ label, heapMB: Math.round(m.heapUsed / 1e6), rssMB: Math.round(m.rss / 1e6), keys: Object.fromEntries(counts), keyMB: +(keyBytes / 1e6).toFixed(1), valueMB: +(valueBytes / 1e6).toFixed(1), senderAddrs: peer?.addresses.length ?? 0 }))
  }
  await measure('start')
  const addr = target.getMultiaddrs()[0].toString()
  for (let r = 1; r <= rounds; r++) {
    const t0 = Date.now()
    const { sent, resets } = await spamProviders(evil, addr, { messages: perRound, addrsPerMessage: addrs, freshAddrs: fresh, timeoutMs: 120_000 })
    await new Promise(resolve => setTimeout(resolve, 500))
    console.log(JSON.stringify({ round: r, sent, resets, ms: Date.now() - t0 }))
    await measure(`after ${r * perRound}`)
  }
  await evil.stop()
  await target.stop()
}

await main()
