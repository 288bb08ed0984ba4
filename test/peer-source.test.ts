import '../src/util/polyfills.js'
import t from 'tap'
import { chunkEntries } from '../src/chunks/manifest.js'
import { encodeManifest } from '../src/chunks/manifest.js'
import { HaveFeeds } from '../src/fetch/have-feeds.js'
import { LocalNode } from '../src/local-node.js'
import { LibpPeerSource, servePeers } from '../src/peer/peer-service.js'
import { buildImage, seededImageBytes } from '../src/testing/memory-image.js'
import { MemoryNetwork } from '../src/testing/memory-peers.js'
import { tempDir } from './helpers/cli.js'
import { streamOf } from './helpers/data.js'
import { spawnPeers, stopAll, waitFor } from './helpers/peers.js'
import { peerSourceSuite } from './suites/peer-source.js'

const bytes = seededImageBytes(1024 * 1024 + 777, 11)

peerSourceSuite(t, {
  name: 'in-memory',
  waitFor,
  setup: async () => {
    const image = buildImage(bytes)
    const net = new MemoryNetwork()
    net.add('local')
    const remote = net.add('remote')
    remote.hold(image, image.bytesOf)
    return {
      source: net.source('local', 'remote'),
      held: { ...image, chunks: image.digests.map(digest => ({ digest, bytes: image.bytesOf(digest) })) },
      localId: 'local',
      remoteFeeds: remote.feeds,
      teardown: async () => {}
    }
  }
})

peerSourceSuite(t, {
  name: 'libp2p',
  waitFor,
  setup: async () => {
    // Stopped in this order at teardown: the peers, the store, its folder.
    const cleanups: Array<() => Promise<void>> = []
    const own = { teardown: (fn: () => Promise<void> | void) => { cleanups.push(async () => { await fn() }) } }
    const [server, client] = await spawnPeers(own, 2, { connect: true })
    const dir = await tempDir(own)
    const local = await LocalNode.open({ dir })
    await local.importStream(streamOf(bytes))
    const feeds = new HaveFeeds()
    await servePeers(server, local.store, { feeds, haveOf: cid => feeds.get(cid)?.bits })
    const record = (await local.list())[0]
    const rec = await local.store.resolve(record.ref)
    const manifest = await local.store.getManifest(rec)
    const chunks = await Promise.all([...chunkEntries(manifest)].map(async e => ({ digest: e.digest, bytes: (await local.store.get(e.digest)).bytes })))
    return {
      source: new LibpPeerSource(client, server.peerId),
      held: { hex: rec.ref.slice('sha256:'.length), manifestCid: rec.manifest, manifestBytes: encodeManifest(manifest), chunks },
      localId: client.peerId.toString(),
      remoteFeeds: feeds,
      teardown: async () => {
        await stopAll([server, client])
        await local.close()
        for (const c of cleanups) await c()
      }
    }
  }
})
