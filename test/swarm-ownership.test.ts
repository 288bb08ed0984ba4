import t from 'tap'
import { chunkCount, decodeManifest, encodeManifest, manifestCid } from '../src/chunks/manifest.js'
import { HaveFeed } from '../src/fetch/have-feeds.js'
import { rendezvousOwner } from '../src/fetch/rendezvous.js'
import type { PeerSource } from '../src/fetch/sources.js'
import { swarmFetch } from '../src/fetch/swarm-fetch.js'
import { missingChunks } from '../src/fetch/wants.js'
import { LocalNode } from '../src/local-node.js'
import type { Origin, OriginReadOptions } from '../src/origin/origin.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { originWith } from './helpers/daemons.js'

const MiB = 1024 * 1024

t.test('rendezvous: every node picks the same owner, and a node leaving moves only its own keys', async t => {
  const nodes = ['a', 'b', 'c', 'd']
  const keys = Array.from({ length: 200 }, (_, i) => `img:${i}`)
  const owners = keys.map(k => rendezvousOwner(k, nodes))
  t.same(keys.map(k => rendezvousOwner(k, [...nodes].reverse())), owners, 'the order of the candidates does not matter')
  for (const n of nodes) t.ok(owners.filter(o => o === n).length > 20, `${n} owns a share`)
  const without = keys.map(k => rendezvousOwner(k, ['a', 'b', 'd']))
  t.same(without.filter((o, i) => owners[i] !== 'c' && o !== owners[i]), [], 'only c\'s keys moved')
})

t.test('origin groups owned by a fetching peer that gains chunks are left to it; once it stalls, this node reads them', async t => {
  const size = 4 * MiB
  const bytes = seededBytes(size, 'ownership')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const hex = ref.slice(7)
  const manifestBytes = (await inner.readManifest(hex))!
  const manifest = decodeManifest(manifestBytes)
  const local = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await local.close() })
  const reads: Array<{ offset: number, at: number }> = []
  const origin: Origin = { ...inner, read: (h: string, o?: OriginReadOptions) => { reads.push({ offset: o?.offset ?? 0, at: Date.now() }); return inner.read(h, o) } }
  const { wants } = await missingChunks(local.store, manifest)
  const n = chunkCount(manifest)
  const feed = new HaveFeed(manifestCid(encodeManifest(manifest)).toString(), n, new Uint8Array(Math.ceil(n / 8)))
  // A peer fetching the same image: it holds nothing yet, but its pushed updates say it gains chunks.
  const peer: PeerSource = { id: 'peer-x', manifest: async () => undefined, have: async () => undefined, chunks: async function * () {} }
  const view = feed.setPeer(peer, new Uint8Array(Math.ceil(n / 8)), true)
  const gaining = setInterval(() => { view.lastGain = Date.now() }, 20)
  const stopAt = Date.now() + 1200
  setTimeout(() => { clearInterval(gaining) }, 1200)
  t.teardown(() => { clearInterval(gaining) })
  const groupOf = (offset: number): number => Math.floor(offset / MiB)
  const mine = (g: number): boolean => rendezvousOwner(`${hex}:${g}`, ['me', 'peer-x']) === 'me'
  t.ok([0, 1, 2, 3].some(g => !mine(g)) && [0, 1, 2, 3].some(mine), 'both nodes own groups of this image')
  let got = 0
  await swarmFetch({
    self: 'me',
    hex,
    manifestCid: feed.manifestCid,
    chunkCount: n,
    wants,
    holders: { findHolders: async () => [] },
    feed,
    origin,
    deliver: async (chunks, ws) => { await local.store.putMany(chunks); got += ws.length },
    received: () => {},
    badChunk: () => {},
    signal: AbortSignal.timeout(20_000),
    limits: { stallMs: 400, settleMs: 0, groupBytes: MiB }
  })
  t.equal(got, wants.length, 'every chunk arrived')
  const early = reads.filter(r => r.at < stopAt).map(r => groupOf(r.offset))
  t.ok(early.length > 0 && early.every(mine), `while the peer gained, only this node's groups were read (${early.join(',')})`)
  const late = reads.filter(r => r.at >= stopAt + 400).map(r => groupOf(r.offset))
  t.ok(late.some(g => !mine(g)), 'after it stalled, its groups were read here')
  t.same(new Set(reads.map(r => groupOf(r.offset))).size, 4, 'each group read')
})
