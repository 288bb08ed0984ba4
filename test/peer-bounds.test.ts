import '../src/util/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Key } from 'interface-datastore'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import t from 'tap'
import { defaultConfig, loadConfig } from '../src/node/config.js'
import type { NodeConfig } from '../src/node/options.js'
import { clusterMember } from '../src/daemon/daemon.js'
import { LocalNode } from '../src/local-node.js'
import { rateLimitedOrigin } from '../src/origin/rate-limited-origin.js'
import { DEFAULT_DHT_LIMITS } from '../src/peer/dht-bounds.js'
import { peerDatastore } from '../src/peer/libp2p-node.js'
import { PeerLimits } from '../src/peer/peer-limits.js'
import { LibpPeerSource, servePeers } from '../src/peer/peer-service.js'
import { askPreheat, servePreheat } from '../src/swarm/preheat-peer.js'
import { PolicySync } from '../src/swarm/policy-sync.js'
import { ReplicaPolicies } from '../src/swarm/replica-policies.js'
import { FetchJob } from '../src/fetch/fetch-job.js'
import { parseRate } from '../src/util/units.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes, streamOf } from './helpers/data.js'
import { metric, originWith, startDaemon } from './helpers/daemons.js'
import { spamProviders } from './helpers/dht-spam.js'
import { spawnPeers, waitFor } from './helpers/peers.js'

t.test('a peer flooding a daemon with ADD_PROVIDER gets its per-peer share kept, no more; the daemon goes on answering', async t => {
  const d = await startDaemon(t)
  const [evil] = await spawnPeers(t, 1)
  const per = DEFAULT_DHT_LIMITS.providersPerPeer
  const { sent } = await spamProviders(evil, d.addr, { messages: per + 2000, streams: 4, freshAddrs: false, timeoutMs: 120_000 })
  t.equal(sent, per + 2000, 'every message went out')
  const ds = peerDatastore(d.daemon.peer)!
  await waitFor(() => ds.counts().refused > 0, 20_000, 'a refusal')
  const counts = ds.counts()
  t.equal(counts.maxPerPeer, per, `the flooder holds exactly its share of ${per} records`)
  t.equal(counts.providers, per, 'and nothing else was kept')
  t.equal(await metric(d.client, 'imgswarm_dht_provider_records', '{of="all"}'), per, 'the gauge shows it')
  t.ok(await metric(d.client, 'imgswarm_dht_refused_total') > 0, 'refusals are counted')
  // An honest second peer still gets its records kept, and the daemon still answers its API.
  const [honest] = await spawnPeers(t, 1)
  const r2 = await spamProviders(honest, d.addr, { messages: 20, streams: 1, freshAddrs: false })
  t.equal(r2.resets, 0)
  await waitFor(() => ds.counts().providers === per + 20, 10_000, 'the honest peer\'s records')
  t.equal((await d.client.call<any>('GET', '/healthz')).ready !== undefined, true)
})

t.test('provider records are bounded in total and expire; addresses a peer sends are bounded too', async t => {
  // A time to live long enough that the total fills before the first records expire, even on a loaded machine.
  const limits = { providersPerPeer: 300, providersTotal: 500, ttlMs: 8_000, sweepMs: 200 }
  const [target, a, b, c] = await spawnPeers(t, 4, i => i === 0 ? { dhtLimits: limits } : {})
  const addr = target.getMultiaddrs()[0].toString()
  const ds = peerDatastore(target)!
  // New addresses in every message: the sender's peer record stops growing at its size bound.
  await spamProviders(c, addr, { messages: 200, streams: 1, addrsPerMessage: 10, freshAddrs: true, timeoutMs: 60_000 })
  await waitFor(() => ds.counts().refused > 0, 30_000, 'the peer record to reach its bound')
  const addrs = (await target.peerStore.get(c.peerId)).addresses.length
  t.ok(addrs > 100 && addrs < 1000, `the peer store keeps ${addrs} of the 2,000 addresses sent`)
  for (const p of [a, b]) await spamProviders(p, addr, { messages: 400, streams: 2, freshAddrs: false })
  await waitFor(() => ds.counts().providers >= 500, 30_000, 'the total to fill')
  t.equal(ds.counts().providers, 500, 'two peers together are held to the total')
  t.equal(ds.counts().maxPerPeer, 300, 'each to its share')
  // Nobody refreshes: every record goes at its time.
  await waitFor(() => ds.counts().providers === 0, 30_000, 'the records to expire')
  t.ok(ds.counts().expired >= 500, 'they expired')
  let listed = 0
  for await (const _ of ds.query({ prefix: '/dht/provider' })) listed++
  t.equal(listed, 0, 'nothing expired is still listed')
  // The node's own records (what it announces) are neither refused nor counted against peers.
  const self = target.peerId.toString()
  for (let i = 0; i < 600; i++) await ds.put(new Key(`/dht/provider/${i.toString(36)}/${self}`), Uint8Array.of(1))
  t.equal(ds.counts().providers, 0, 'own records are not counted')
})

t.test('a peer over its request rate is answered busy, never crashes the node, and is served again once under it', async t => {
  const [server, client] = await spawnPeers(t, 2, { connect: true })
  const local = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await local.close() })
  const { record } = await local.importStream(streamOf(seededBytes(256 * 1024, 'rate')))
  const limits = new PeerLimits({ requestsPerSecond: 5, requestBurst: 10 })
  await servePeers(server, local.store, { limits })
  const source = new LibpPeerSource(client, server.peerId)
  let ok = 0
  let busy = 0
  // 30 at once: under libp2p's own bound on open streams of one protocol (32 here), so only ours refuses.
  const answers = await Promise.allSettled(Array.from({ length: 30 }, async () => await source.manifest({ cid: record.manifest })))
  for (const a of answers) {
    if (a.status === 'fulfilled' && a.value != null) ok++
    else if (a.status === 'rejected' && (a.reason as { reason?: string }).reason === 'busy') busy++
  }
  t.ok(ok >= 10 && ok <= 14, `${ok} of 30 requests at once were answered: the burst, and what refilled meanwhile`)
  t.equal(ok + busy, 30, 'every other one was answered busy (a clear refusal, not a reset)')
  t.equal(limits.refusedRequests, busy, 'and counted')
  await new Promise(resolve => setTimeout(resolve, 1_000))
  t.ok(await source.manifest({ cid: record.manifest }) != null, 'after a pause the peer is served again')
})

t.test('bytes in flight per peer: a stream that would pass the budget waits for the peer\'s others', async t => {
  const limits = new PeerLimits({ bytesInFlightPerPeer: 100 })
  await limits.hold('p', 60)
  let second = false
  const waiting = limits.hold('p', 60).then(() => { second = true })
  await limits.hold('q', 60)
  t.equal(limits.inFlight('q'), 60, 'another peer has its own budget')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(second, false, 'the second read waits while the first is in flight')
  limits.release('p', 60)
  await waiting
  t.equal(limits.inFlight('p'), 60)
  const controller = new AbortController()
  const aborted = limits.hold('p', 60, controller.signal)
  controller.abort(new Error('stream closed'))
  await t.rejects(aborted, /stream closed/, 'a waiting stream that closes gives up its turn')
  await limits.hold('r', 1000)
  t.equal(limits.inFlight('r'), 1000, 'one read larger than the budget goes alone')
})

t.test('preheats and replica policies are taken from members only', async t => {
  const [server, member, stranger] = await spawnPeers(t, 3, { connect: true })
  const jobs: FetchJob[] = []
  const fetcher = { start: (ref: string) => { const j = new FetchJob(ref); jobs.push(j); return j } } as any
  const members = new Set([member.peerId.toString()])
  const isMember = (p: { toString: () => string }): boolean => members.has(p.toString())
  await servePreheat(server, fetcher, { member: isMember })
  const ref = `sha256:${'ef'.repeat(32)}`
  await t.rejects(askPreheat(stranger, server.peerId, [ref], () => {}), { name: 'RemoteError', reason: 'forbidden' }, 'a stranger\'s preheat is refused')
  t.equal(jobs.length, 0, 'and starts no fetch')
  const controller = new AbortController()
  const asked = askPreheat(member, server.peerId, [ref], () => { controller.abort() }, { signal: controller.signal }).catch(() => {})
  await waitFor(() => jobs.length === 1, 5_000, 'the member\'s fetch')
  await asked
  for (const j of jobs) j.fail(new Error('test over'))

  const policies = async (id: string): Promise<ReplicaPolicies> => await ReplicaPolicies.open(await tempDir(t), id)
  const mine = await policies(server.peerId.toString())
  const sync = new PolicySync({ node: server, policies: mine, intervalMs: 3_600_000, member: isMember })
  await sync.start()
  t.teardown(() => { sync.stop() })
  const theirs = await policies(stranger.peerId.toString())
  await theirs.set('12'.repeat(32), 5)
  const strangerSync = new PolicySync({ node: stranger, policies: theirs, intervalMs: 3_600_000 })
  t.teardown(() => { strangerSync.stop() })
  await strangerSync.syncWith(server.peerId)
  t.equal(mine.all().length, 0, 'a stranger\'s replica policy is not adopted')
  const friendly = await policies(member.peerId.toString())
  await friendly.set('34'.repeat(32), 2)
  const memberSync = new PolicySync({ node: member, policies: friendly, intervalMs: 3_600_000 })
  t.teardown(() => { memberSync.stop() })
  await memberSync.syncWith(server.peerId)
  t.same(mine.all().map(p => p.min), [2], 'a member\'s is')
})

t.test('who counts as a member of the cluster', async t => {
  const base: NodeConfig = { ...defaultConfig('/x'), listen: [] }
  const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  t.equal(clusterMember({ ...base, swarmKey: 'k' }, true)(id), true, 'with a swarm key, every peer that connected holds it')
  t.equal(clusterMember({ ...base, allowPeers: [id.toString()] }, true)(other), false, 'with an allow-list, only listed peers')
  t.equal(clusterMember({ ...base, allowPeers: [id.toString()] }, true)(id), true)
  t.equal(clusterMember({ ...base, open: true }, true)(id), false, '--open alone: strangers may read, not make the node fetch or keep')
  t.equal(clusterMember({ ...base, open: true, openRequests: true }, true)(id), true, 'unless --open-requests says so')
  t.equal(clusterMember(base, false)(id), true, 'a node on loopback alone: only this machine reaches it')
})

t.test('rates: units, config, and the caps hold transfers to them', async t => {
  t.equal(parseRate('100MB'), 100e6)
  t.equal(parseRate('100MB/s'), 100e6)
  t.equal(parseRate('50MiB'), 50 * 1024 * 1024)
  t.equal(parseRate('1Gbit'), 125e6)
  t.equal(parseRate('800Mbit/s'), 100e6)
  t.throws(() => parseRate('fast'), { code: 'IMGSWARM_USAGE' })
  t.throws(() => parseRate('0MB'), { code: 'IMGSWARM_USAGE' })
  const dir = await tempDir(t)
  const c = await loadConfig({ 'max-upload-rate': '2MiB' }, { IMGSWARM_MAX_ORIGIN_RATE: '1Gbit' }, dir)
  t.equal(c.maxUploadRate, 2 * 1024 * 1024, 'the flag')
  t.equal(c.maxOriginRate, 125e6, 'the variable')
  t.equal((await loadConfig({}, {}, dir)).maxUploadRate, undefined, 'off by default')

  // Origin: 3 MiB through a 1 MiB/s cap (1 MiB of burst) cannot take less than ~2 s.
  const bytes = seededBytes(3 * 1024 * 1024, 'origin-rate')
  const { origin, refs: [ref] } = await originWith(t, [bytes])
  const capped = rateLimitedOrigin(origin, 1024 * 1024)
  const t0 = performance.now()
  let got = 0
  for await (const piece of capped.read(ref.slice(7))) got += piece.length
  const secs = (performance.now() - t0) / 1000
  t.equal(got, bytes.length)
  t.ok(secs >= 1.8, `the origin read took ${secs.toFixed(2)} s at 1 MiB/s`)

  // Upload: B fetches 6 MiB from A, whose peers share a 2 MiB/s cap: at least ~2.5 s.
  const img = seededBytes(6 * 1024 * 1024, 'upload-rate')
  const a = await startDaemon(t, { config: { maxUploadRate: 2 * 1024 * 1024 } })
  const { record } = await a.client.importStream(streamOf(img))
  const b = await startDaemon(t, { bootstrap: [a.addr] })
  await waitFor(() => b.daemon.peer.getConnections().length > 0, 10_000, 'B to connect')
  const t1 = performance.now()
  const res = await b.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [record.ref] })
  const upSecs = (performance.now() - t1) / 1000
  t.equal(res.ok, true, JSON.stringify(res))
  t.ok(upSecs >= 2.3, `6 MiB from A took ${upSecs.toFixed(2)} s under its 2 MiB/s upload cap`)
})
