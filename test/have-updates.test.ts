import '../src/util/polyfills.js'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import t from 'tap'
import { Fetcher } from '../src/fetch/fetcher.js'
import { HaveFeed, HaveFeeds } from '../src/fetch/have-feeds.js'
import type { HolderFinder, PeerSource } from '../src/fetch/sources.js'
import { LocalNode } from '../src/local-node.js'
import type { Origin } from '../src/origin/origin.js'
import { request } from '../src/peer/exchange.js'
import { ConnectedHolders, LibpPeerSource, servePeers } from '../src/peer/peer-service.js'
import {
  HAVE_UPDATES, MAX_UPDATE_RUNS, decodeHaveUpdate, encodeHaveUpdate, encodeHaveUpdatesRequest, indexRuns
} from '../src/peer/protocols.js'
import type { PeerNode } from '../src/peer/libp2p-node.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { countingOrigin, originWith } from './helpers/daemons.js'
import { spawnPeers, waitFor } from './helpers/peers.js'

interface Calls { have: number, watch: number }

/** The holders a node finds, with the `have` polls and have-updates streams it opens counted. */
function counted (inner: HolderFinder, calls: Calls): HolderFinder {
  const wrap = (s: PeerSource): PeerSource => ({
    id: s.id,
    manifest: async (ref, o) => await s.manifest(ref, o),
    have: async (cid, n, o) => { calls.have++; return await s.have(cid, n, o) },
    chunks: (digests, o) => s.chunks(digests, o),
    watchHave: s.watchHave == null ? undefined : async (feed, o) => { calls.watch++; return await s.watchHave!(feed, o) }
  })
  return { findHolders: async (key, o) => (await inner.findHolders(key, o)).map(wrap) }
}

interface TestNode { peer: PeerNode, local: LocalNode, fetcher: Fetcher, calls: Calls }

/** A node in this process: `release: 'previous'` serves and uses only the polled `have`, as the last release did. */
async function startNode (t: { teardown: (fn: () => Promise<void> | void) => void }, peer: PeerNode, release: 'new' | 'previous', origin?: Origin): Promise<TestNode> {
  const local = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await local.close() })
  const calls: Calls = { have: 0, watch: 0 }
  const pushed = release === 'new'
  const fetcher = new Fetcher({ store: local.store, holders: counted(new ConnectedHolders(peer, { pushed }), calls), origin, selfId: peer.peerId.toString() })
  await servePeers(peer, local.store, { haveOf: cid => fetcher.haveOf(cid), feeds: pushed ? fetcher.feeds : undefined })
  return { peer, local, fetcher, calls }
}

/** Connects every pair once the handlers are registered, and waits until identify has told each what the others speak. */
async function meshOf (peers: PeerNode[]): Promise<void> {
  for (let i = 0; i < peers.length; i++) for (let j = i + 1; j < peers.length; j++) await peers[i].dial(peers[j].getMultiaddrs())
  const knows = async (a: PeerNode, b: PeerNode): Promise<boolean> => (await a.peerStore.get(b.peerId).catch(() => undefined))?.protocols.includes('/imgswarm/chunks/1.0.0') === true
  const deadline = Date.now() + 10_000
  for (const a of peers) {
    for (const b of peers) {
      while (a !== b && !(await knows(a, b))) {
        if (Date.now() > deadline) throw new Error('identify did not finish in 10 s')
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    }
  }
}

async function someManifestCid (): Promise<CID> {
  return CID.create(1, dagCbor.code, await sha256.digest(new TextEncoder().encode(String(Math.random()))))
}

t.test('update frames: runs and candidates round-trip, and a run past the image, too many runs, a candidate out of bounds or trailing bytes are refused', async t => {
  const frame = encodeHaveUpdate({ type: 'update', runs: [[0, 3], [700, 1]] })
  t.same(decodeHaveUpdate(frame, 701), { type: 'update', runs: [[0, 3], [700, 1]] })
  t.same(decodeHaveUpdate(encodeHaveUpdate({ type: 'complete' }), 5), { type: 'complete' })
  t.throws(() => decodeHaveUpdate(frame, 700), /run 700\+1 outside an image of 700 chunks/)
  t.throws(() => decodeHaveUpdate(Uint8Array.of(...frame, 0), 701), /trailing bytes/)
  const many = Uint8Array.of(0x08, 0x81, 0x08) // a count of 1025 runs
  t.throws(() => decodeHaveUpdate(many, 5000), /1025 runs exceed the 1024/)
  const isolated = Array.from({ length: 2 * MAX_UPDATE_RUNS + 2 }, (_, i) => 2 * i)
  const frames = indexRuns([...isolated, 1, 1])
  t.same(frames.map(f => f.length), [MAX_UPDATE_RUNS, MAX_UPDATE_RUNS, 1], 'indices in frames of at most 1024 runs')
  t.same(frames[0].slice(0, 2), [[0, 3], [4, 1]], 'consecutive indices make one run, duplicates count once')
  const claims = encodeHaveUpdate({ type: 'candidates', candidates: [{ id: '12D3KooWexample', held: 5 }] })
  t.same(decodeHaveUpdate(claims, 5), { type: 'candidates', candidates: [{ id: '12D3KooWexample', held: 5 }] })
  t.throws(() => decodeHaveUpdate(claims, 4), /candidate 12D3KooWexample holds 5 chunks of an image of 4/)
  t.throws(() => decodeHaveUpdate(Uint8Array.of(0x0a, 1, 0x81, 0x01, ...new Uint8Array(129), 0), 5), /a candidate id of 129 bytes/)
  t.throws(() => decodeHaveUpdate(Uint8Array.of(0x0a, 65), 5), /65 candidates exceed the 64/)
})

t.test('a watch gets the bitfield once, then each stored chunk, then "complete"; this node\'s bits go the other way', async t => {
  const [server, client] = await spawnPeers(t, 2, { connect: true })
  const local = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await local.close() })
  const feeds = new HaveFeeds()
  const cid = (await someManifestCid()).toString()
  const theirs = feeds.open(cid, 20, Uint8Array.of(0x80, 0, 0)) // holds chunk 0
  await servePeers(server, local.store, { feeds })
  const mine = new HaveFeed(cid, 20, Uint8Array.of(0, 0, 0x10)) // holds chunk 19
  const source = new LibpPeerSource(client, server.peerId)
  const watching = source.watchHave!(mine, { signal: AbortSignal.timeout(20_000) })
  await waitFor(() => mine.peers.get(source.id) != null, 10_000, 'the bitfield')
  t.equal(mine.peers.get(source.id)!.have[0], 0x80, 'the first frame is the whole bitfield')
  t.equal(mine.peers.get(source.id)!.fetching, true, 'of a node fetching the image')
  const clientId = client.peerId.toString()
  await waitFor(() => theirs.peers.get(clientId) != null, 10_000, 'our bitfield at the server')
  t.equal(theirs.peers.get(clientId)!.have[2], 0x10, 'the request carried our bitfield')
  theirs.bits[0] |= 0x60
  theirs.stored([1, 2])
  await waitFor(() => mine.peers.get(source.id)!.have[0] === 0xe0, 5000, 'the pushed update')
  mine.bits[0] |= 0x08
  mine.stored([4])
  await waitFor(() => theirs.peers.get(clientId)!.have[0] === 0x08, 5000, 'our pushed update')
  feeds.close(theirs, true)
  t.equal(await watching, true, 'the watch ends when the server holds it all')
  t.equal(mine.peers.get(source.id)!.have.every((b, i) => b === (i < 2 ? 0xff : 0xf0)), true, 'and the view says every chunk')
  t.equal(mine.peers.get(source.id)!.fetching, false)
  await waitFor(() => theirs.peers.get(clientId) == null || !theirs.peers.get(clientId)!.live, 5000, 'the server to forget the stream')
})

t.test('candidates travel both ways over a real stream, and never to a requester that did not ask for them', async t => {
  const [server, client] = await spawnPeers(t, 2, { connect: true })
  const local = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await local.close() })
  const feeds = new HaveFeeds()
  const cid = await someManifestCid()
  const theirs = feeds.open(cid.toString(), 20, new Uint8Array(3))
  theirs.runAs(server.peerId.toString())
  theirs.hearClaims([{ id: 'a-node-only-the-server-sees', held: 3 }])
  await servePeers(server, local.store, { feeds })
  const mine = new HaveFeed(cid.toString(), 20, new Uint8Array(3))
  mine.runAs(client.peerId.toString())
  const source = new LibpPeerSource(client, server.peerId)
  const controller = new AbortController()
  t.teardown(() => { controller.abort() })
  const watching = source.watchHave!(mine, { signal: controller.signal })
  await waitFor(() => mine.claims().some(c => c.id === 'a-node-only-the-server-sees'), 10_000, 'the server\'s candidates at the client')
  t.equal(mine.claims().find(c => c.id === 'a-node-only-the-server-sees')?.held, 3, 'with the count the server heard')
  mine.hearClaims([{ id: 'a-node-only-the-client-sees', held: 1 }])
  await waitFor(() => theirs.claims().some(c => c.id === 'a-node-only-the-client-sees'), 10_000, 'the client\'s candidates at the server')
  theirs.hearClaims([{ id: 'a-node-only-the-server-sees', held: 7 }])
  await waitFor(() => mine.claims().find(c => c.id === 'a-node-only-the-server-sees')?.held === 7, 10_000, 'a count that rose, on the next beat')
  controller.abort()
  await watching.catch(() => {})

  // A requester of the previous release does not say `candidates`: it gets the bitfield and updates only.
  const kinds: number[] = []
  async function * previous (): AsyncGenerator<Uint8Array> {
    yield encodeHaveUpdatesRequest({ manifest: cid, have: new Uint8Array(3), fetching: true })
    await new Promise(resolve => setTimeout(resolve, 1500))
  }
  const reading = (async () => { for await (const frame of request(client, server.peerId, HAVE_UPDATES, previous())) kinds.push(frame[0]) })()
  await waitFor(() => kinds.length > 0, 5000, 'the bitfield')
  theirs.hearClaims([{ id: 'news-after-the-stream-opened', held: 1 }])
  theirs.bits[0] |= 0x80
  theirs.stored([0])
  await waitFor(() => kinds.length > 1, 5000, 'the update')
  feeds.close(theirs, true)
  await reading
  t.notOk(kinds.includes(0x0a), `no candidates frame among kinds ${kinds.join(', ')}`)
  t.ok(kinds.includes(0x08), 'the update came')
})

t.test('a peer that floods updates, or names chunks past the image, has its stream reset and its view dropped', async t => {
  const [server, client] = await spawnPeers(t, 2, { connect: true })
  const local = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await local.close() })
  const feeds = new HaveFeeds()
  const cid = await someManifestCid()
  const feed = feeds.open(cid.toString(), 16, new Uint8Array(2))
  await servePeers(server, local.store, { feeds })
  const first = encodeHaveUpdatesRequest({ manifest: cid, have: new Uint8Array(2), fetching: true })
  async function * flood (): AsyncGenerator<Uint8Array> {
    yield first
    for (let i = 0; i < 200; i++) yield encodeHaveUpdate({ type: 'update', runs: [[i % 16, 1]] })
    await new Promise(resolve => setTimeout(resolve, 2000))
  }
  await t.rejects(async () => { for await (const _ of request(client, server.peerId, HAVE_UPDATES, flood())); }, 'the flood is reset')
  await waitFor(() => !feed.peers.has(client.peerId.toString()), 5000, 'the view to go')
  async function * past (): AsyncGenerator<Uint8Array> {
    yield first
    yield encodeHaveUpdate({ type: 'update', runs: [[15, 2]] })
    await new Promise(resolve => setTimeout(resolve, 2000))
  }
  await t.rejects(async () => { for await (const _ of request(client, server.peerId, HAVE_UPDATES, past())); }, 'a run past the last chunk is reset')
  t.equal(feed.peers.has(client.peerId.toString()), false)
  const wrongSize = encodeHaveUpdatesRequest({ manifest: cid, have: new Uint8Array(3), fetching: true })
  await t.rejects(async () => { for await (const _ of request(client, server.peerId, HAVE_UPDATES, [wrongSize])); }, 'a bitfield of the wrong size is reset')
})

t.test('mixed releases: a new node fetches from a node of the previous release, and the previous release from a new one', async t => {
  const [p0, p1] = await spawnPeers(t, 2)
  const previous = await startNode(t, p0, 'previous')
  const fresh = await startNode(t, p1, 'new')
  await meshOf([p0, p1])
  const oldImage = seededBytes(3 * 1024 * 1024, 'old-release')
  const newImage = seededBytes(3 * 1024 * 1024, 'new-release')
  await previous.local.importStream(streamOf(oldImage))
  await fresh.local.importStream(streamOf(newImage))

  const got = await fresh.fetcher.fetch(sha256Ref(oldImage))
  t.equal(got.ref, sha256Ref(oldImage), 'the new node holds the previous release\'s image')
  t.ok(got.sources!.peers >= oldImage.length, 'all of it (and its manifest) from that peer')
  t.equal(got.sources!.origin, 0)
  t.ok(fresh.calls.have > 0, `the new node polled the old one's have (${fresh.calls.have} times)`)
  t.equal(fresh.calls.watch, 0, 'and opened no have-updates stream to it')

  const back = await previous.fetcher.fetch(sha256Ref(newImage))
  t.ok(back.sources!.peers >= newImage.length, 'the previous release fetches all of a new node\'s image from it')
  t.ok(previous.calls.have > 0, 'by the polled have, which the new node still serves')

  // A new node that tries have-updates on an old one (no identify yet) is told it is unsupported, and polls.
  const feed = new HaveFeed((await someManifestCid()).toString(), 8, new Uint8Array(1))
  await t.rejects(new LibpPeerSource(p1, p0.peerId).watchHave!(feed), { name: 'ProtocolUnsupportedError' })
})

t.test('new nodes fetching together push their haves (no polls), read the origin about once and get exact bytes', async t => {
  const size = 8 * 1024 * 1024
  const bytes = seededBytes(size, 'pushed')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin, counts } = countingOrigin(inner)
  const peers = await spawnPeers(t, 3)
  const nodes = await Promise.all(peers.map(async p => await startNode(t, p, 'new', origin)))
  await meshOf(peers)
  const records = await Promise.all(nodes.map(async n => await n.fetcher.fetch(ref)))
  for (const [i, r] of records.entries()) {
    t.equal(r.state, 'available', `node ${i} has the image`)
    const file = join(await tempDir(t), 'image')
    await nodes[i].local.export(ref, file)
    t.equal(sha256Ref(await readFile(file)), ref, `node ${i} holds the exact bytes`)
  }
  t.equal(nodes.reduce((n, x) => n + x.calls.have, 0), 0, 'no node polled another')
  t.ok(nodes.reduce((n, x) => n + x.calls.watch, 0) >= 1, 'have-updates streams carried the haves')
  const copies = counts.bytes / size
  t.ok(copies <= 1.5, `the origin sent ${copies.toFixed(2)} copies for 3 nodes`)
  const fromPeers = records.reduce((n, r) => n + (r.sources?.peers ?? 0), 0)
  t.ok(fromPeers >= size, `${(fromPeers / size).toFixed(2)} copies moved between peers`)
})
