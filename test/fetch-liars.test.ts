import t from 'tap'
import { CacheFullError, DigestMismatchError, ImageNotFoundError } from '../src/errors.js'
import { Fetcher, type FetchObserver } from '../src/fetch/fetcher.js'
import { LyingPeers } from '../src/fetch/lying-peers.js'
import { LocalNode } from '../src/local-node.js'
import type { PeerSource } from '../src/fetch/sources.js'
import { readImage } from '../src/store/read-image.js'
import { LevelStore } from '../src/store/level-store.js'
import { countingOrigin, originWith } from './helpers/daemons.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { storePeer } from './helpers/store-peer.js'
import { ingest } from '../src/store/ingest.js'

const MiB = 1024 * 1024

async function storeHolding (t: { teardown: (fn: () => Promise<void>) => void }, images: Array<{ bytes: Uint8Array, name: string }>): Promise<LevelStore> {
  const store = await LevelStore.open()
  t.teardown(async () => { await store.close() })
  for (const { bytes, name } of images) await ingest(store, streamOf(bytes), { meta: { type: 'machine', name, format: 'raw' } })
  return store
}

function fetcherOver (t: { teardown: (fn: () => Promise<void>) => void }, store: LevelStore, peers: PeerSource[], extra: Partial<ConstructorParameters<typeof Fetcher>[0]> = {}): { fetcher: Fetcher, lies: string[] } {
  const lies: string[] = []
  const observer: FetchObserver = { received: () => {}, originMetadata: () => {}, badChunk: () => {}, lyingPeer: p => { lies.push(p) }, cache: () => {}, finished: () => {} }
  const fetcher = new Fetcher({ store, holders: { findHolders: async () => peers }, observer, askTimeoutMs: 2000, swarmLimits: { settleMs: 0, pollMs: 20 }, ...extra })
  void t
  return { fetcher, lies }
}

async function bytesOf (store: LevelStore, ref: string): Promise<Buffer> {
  const rec = await store.resolve(ref)
  const parts: Uint8Array[] = []
  for await (const w of readImage(store, await store.getManifest(rec))) for (const c of w) parts.push(c.bytes)
  return Buffer.concat(parts)
}

const real = seededBytes(3 * MiB, 'real image')
const other = seededBytes(3 * MiB, 'the liar holds this')
const claim = sha256Ref(real)

t.test('a liar asked first, an honest peer second, no origin: the image arrives, with the honest metadata', async t => {
  const liarStore = await storeHolding(t, [{ bytes: other, name: 'evil-name' }])
  const honestStore = await storeHolding(t, [{ bytes: real, name: 'debian-12' }])
  const liar = storePeer('liar', liarStore, { lie: { claim, holds: sha256Ref(other) } })
  const honest = storePeer('honest', honestStore)
  const mine = await LevelStore.open()
  t.teardown(async () => { await mine.close() })
  const { fetcher, lies } = fetcherOver(t, mine, [liar.peer, honest.peer])
  const rec = await fetcher.fetch(claim)
  t.equal(rec.state, 'available')
  t.equal(rec.name, 'debian-12', 'the honest peer\'s name, not the liar\'s')
  t.ok((await bytesOf(mine, claim)).equals(real), 'byte-exact')
  t.same(lies, ['liar'], 'the liar was caught once')
  t.ok(liar.calls.manifests >= 1, 'the liar was asked first')

  // Remembered: the next fetch does not ask it again.
  const asked = liar.calls.manifests
  const second = seededBytes(1 * MiB, 'second image')
  await ingest(honestStore, streamOf(second), { meta: { type: 'kernel', name: 'k', format: 'raw' } })
  await fetcher.fetch(sha256Ref(second))
  t.equal(liar.calls.manifests, asked, 'a known liar is not asked for the next image')
})

t.test('only a liar and no origin: the fetch fails with the mismatch and keeps nothing of the liar\'s', async t => {
  const liarStore = await storeHolding(t, [{ bytes: other, name: 'evil-name' }])
  const liar = storePeer('liar', liarStore, { lie: { claim, holds: sha256Ref(other) } })
  const mine = await LevelStore.open()
  t.teardown(async () => { await mine.close() })
  const { fetcher } = fetcherOver(t, mine, [liar.peer])
  await t.rejects(fetcher.fetch(claim), DigestMismatchError)
  await t.rejects(mine.resolve(claim), ImageNotFoundError, 'no record with the liar\'s name, type or format')
})

t.test('an origin that knows the size: a liar\'s manifest of another size is refused before any chunk is fetched', async t => {
  const small = seededBytes(2 * MiB, 'smaller lie')
  const liarStore = await storeHolding(t, [{ bytes: small, name: 'evil' }])
  const liar = storePeer('liar', liarStore, { lie: { claim, holds: sha256Ref(small) } })
  const { origin: inner } = await originWith(t, [real], { manifests: false })
  const { origin, counts } = countingOrigin(inner)
  const mine = await LevelStore.open()
  t.teardown(async () => { await mine.close() })
  const { fetcher, lies } = fetcherOver(t, mine, [liar.peer], { origin })
  const rec = await fetcher.fetch(claim)
  t.equal(rec.state, 'available')
  t.ok((await bytesOf(mine, claim)).equals(real))
  t.equal(liar.calls.chunks, 0, 'no chunk was asked of the liar')
  t.same(lies, ['liar'])
  t.ok(counts.stats >= 1, 'the origin was asked for the size')
})

t.test('an origin with manifests: a same-size lie is caught by the digest, and the origin\'s manifest serves', async t => {
  const liarStore = await storeHolding(t, [{ bytes: other, name: 'evil' }])
  const liar = storePeer('liar', liarStore, { lie: { claim, holds: sha256Ref(other) } })
  const { origin: inner } = await originWith(t, [real])
  const { origin, counts } = countingOrigin(inner)
  const mine = await LevelStore.open()
  t.teardown(async () => { await mine.close() })
  const { fetcher, lies } = fetcherOver(t, mine, [liar.peer], { origin, liars: new LyingPeers() })
  const rec = await fetcher.fetch(claim)
  t.equal(rec.name, 'test', 'the origin\'s manifest (its name) was used')
  t.ok((await bytesOf(mine, claim)).equals(real))
  t.same(lies, ['liar'], 'the liar was caught')
  t.equal(counts.manifests, 1, 'the origin\'s manifest was read once, after the lie')
})

/** A node whose cache holds at most 8 MiB, with its real admission. */
async function cappedNode (t: { teardown: (fn: () => Promise<void>) => void }): Promise<LocalNode> {
  const node = await LocalNode.open({ cache: { limits: { maxSize: { bytes: 8 * MiB }, highWater: 0.9, lowWater: 0.5 }, graceMs: 0, admitWaitMs: 0 } })
  t.teardown(async () => { await node.close() })
  return node
}

// The liar relabels a 12 MiB image as the 3 MiB one: its manifest's sizes add up, to 12 MiB.
const huge = seededBytes(12 * MiB, 'inflated claim')

t.test('an inflated size that no origin can check: the liar\'s claim does not fit, the honest peer\'s is fetched', async t => {
  const liar = storePeer('liar', await storeHolding(t, [{ bytes: huge, name: 'evil' }]), { lie: { claim, holds: sha256Ref(huge) } })
  const honest = storePeer('honest', await storeHolding(t, [{ bytes: real, name: 'debian-12' }]))
  const node = await cappedNode(t)
  const { fetcher, lies } = fetcherOver(t, node.store, [liar.peer, honest.peer], { admit: async image => await node.evictor.admit(image) })
  const rec = await fetcher.fetch(claim)
  t.equal(rec.state, 'available', 'not failed with the liar\'s CacheFull')
  t.equal(rec.name, 'debian-12')
  t.ok((await bytesOf(node.store, claim)).equals(real), 'byte-exact')
  t.ok(liar.calls.manifests >= 1, 'the liar was asked first')
  t.equal(liar.calls.chunks, 0, 'no chunk was asked of the liar')
  t.same(lies, ['liar'], 'once the image proved 3 MiB, the liar that said 12 was caught')
})

t.test('an inflated size and no one else to ask: CacheFull, and nothing kept', async t => {
  const liar = storePeer('liar', await storeHolding(t, [{ bytes: huge, name: 'evil' }]), { lie: { claim, holds: sha256Ref(huge) } })
  const node = await cappedNode(t)
  const { fetcher, lies } = fetcherOver(t, node.store, [liar.peer], { admit: async image => await node.evictor.admit(image) })
  await t.rejects(fetcher.fetch(claim), CacheFullError)
  await t.rejects(node.store.resolve(claim), ImageNotFoundError, 'no record of the claim')
  t.same(lies, [], 'not called a liar: the image might be that big')
})

t.test('an inflated size, then the origin: its manifest is fetched', async t => {
  const liar = storePeer('liar', await storeHolding(t, [{ bytes: huge, name: 'evil' }]), { lie: { claim, holds: sha256Ref(huge) } })
  const { origin: inner } = await originWith(t, [real])
  // An origin that cannot say the size (no stat) but has the manifest: the claim stands until admission.
  const origin = { ...countingOrigin(inner).origin, stat: async () => undefined }
  const node = await cappedNode(t)
  const { fetcher, lies } = fetcherOver(t, node.store, [liar.peer], { origin, admit: async image => await node.evictor.admit(image) })
  const rec = await fetcher.fetch(claim)
  t.equal(rec.state, 'available')
  t.ok((await bytesOf(node.store, claim)).equals(real))
  t.equal(liar.calls.chunks, 0)
  t.same(lies, ['liar'])
})
