import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { startDaemon, waitReady } from './helpers/daemons.js'
import { DhtHolders, imageCid } from '../src/peer/dht.js'
import { silentLogger } from '../src/util/log.js'

t.test('C finds the holder A through the DHT without being told of it', async t => {
  const bytes = seededBytes(4 * 1024 * 1024, 'dht')
  const b = await startDaemon(t)
  const a = await startDaemon(t, { bootstrap: [b.addr] })
  const c = await startDaemon(t, { bootstrap: [b.addr] })
  await waitReady(a)
  await waitReady(c)
  const { record } = await a.client.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'dht' } })
  // The DHT's own upkeep may have connected C to A already; cut that, so only a provider lookup can find A.
  await c.daemon.peer.hangUp(a.daemon.peer.peerId)
  const before = await c.client.call<Array<{ peerId: string }>>('GET', '/v1/peers')
  t.notOk(before.some(p => p.peerId === a.daemon.peer.peerId.toString()), 'C is not connected to A before the fetch')
  // C knows only B, which does not hold the image, and there is no origin anywhere.
  const res = await c.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [record.ref] })
  t.equal(res.ok, true, JSON.stringify(res.images[0].error))
  t.equal(res.images[0].bytes.peer >= bytes.length, true, 'every byte came from a peer')
  const out = join(await tempDir(t), 'c.img')
  await c.client.export(record.ref, out)
  t.equal(sha256Ref(await readFile(out)), record.ref)
  const peers = await c.client.call<Array<{ peerId: string }>>('GET', '/v1/peers')
  t.ok(peers.some(p => p.peerId === a.daemon.peer.peerId.toString()), 'C is now connected to A')
})

t.test('C, not connected to the holder A, gets an image by its manifest CID through the DHT', async t => {
  const bytes = seededBytes(3 * 1024 * 1024, 'dht-manifest-cid')
  const b = await startDaemon(t)
  const a = await startDaemon(t, { bootstrap: [b.addr] })
  const c = await startDaemon(t, { bootstrap: [b.addr] })
  await waitReady(a)
  await waitReady(c)
  const { record } = await a.client.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'dht-cid' } })
  await c.daemon.peer.hangUp(a.daemon.peer.peerId)
  const before = await c.client.call<Array<{ peerId: string }>>('GET', '/v1/peers')
  t.notOk(before.some(p => p.peerId === a.daemon.peer.peerId.toString()), 'C is not connected to A before the fetch')
  // Named only by the manifest CID: the holders are looked up under that CID's provider records.
  const res = await c.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [record.manifest] })
  t.equal(res.ok, true, JSON.stringify(res.images[0].error))
  t.equal(res.images[0].bytes.peer >= bytes.length, true, 'every byte came from a peer')
  const out = join(await tempDir(t), 'c.img')
  await c.client.export(record.ref, out)
  t.equal(sha256Ref(await readFile(out)), record.ref, 'the image, whole')
  const peers = await c.client.call<Array<{ peerId: string }>>('GET', '/v1/peers')
  t.ok(peers.some(p => p.peerId === a.daemon.peer.peerId.toString()), 'C is now connected to A')
})

t.test('holders of an image named by its manifest CID are looked up under that CID, not as a digest', async t => {
  const asked: string[] = []
  const fakeNode = {
    peerId: { equals: () => false },
    getConnections: () => [{}],
    contentRouting: { findProviders: (cid: { toString: () => string }) => { asked.push(cid.toString()); return [] } },
    peerStore: { merge: async () => {} },
    dial: async () => {}
  }
  const holders = new DhtHolders(fakeNode as any, { findHolders: async () => [] }, silentLogger)
  const manifest = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
  const hex = 'ab'.repeat(32)
  await holders.findHolders(manifest, { wait: true })
  await holders.findHolders(hex, { wait: true })
  t.same(asked, [manifest, imageCid(hex).toString()], 'the manifest CID as itself, the digest as its image CID')
})
