import t from 'tap'
import { Candidates, type CandidateClaim } from '../src/fetch/candidates.js'
import { HaveFeed } from '../src/fetch/have-feeds.js'
import type { PeerSource } from '../src/fetch/sources.js'
import { VirtualClock } from '../src/testing/virtual-clock.js'

const ids = (claims: CandidateClaim[]): string[] => claims.map(c => c.id)

t.test('the best candidates are the lowest scores, whoever tells of them and in whatever order', async t => {
  const all = Array.from({ length: 40 }, (_, i) => `node-${i}`)
  const a = new Candidates('image', 100, 8)
  const b = new Candidates('image', 100, 8)
  a.hear(all.map(id => ({ id, held: 0 })), 0)
  for (const id of [...all].reverse()) b.hear([{ id, held: 0 }], 0)
  const best = a.best([], 0, 5000)
  t.equal(best.length, 8, 'as many as the limit')
  t.same(ids(b.best([], 0, 5000)), ids(best), 'the same set, in the same order, at both')
  const sorted = [...all].sort((x, y) => (a.score(x) < a.score(y) ? -1 : 1))
  t.same(ids(best), sorted.slice(0, 8), 'lowest scores first')
  const other = new Candidates('another image', 100, 8)
  other.hear(all.map(id => ({ id, held: 0 })), 0)
  t.not(ids(other.best([], 0, 5000)).join(), ids(best).join(), 'another image has other candidates')
})

t.test('a candidate whose count stops rising drops out and the next takes its place; one holding everything stays', async t => {
  const c = new Candidates('image', 10, 2)
  const [first, second, third] = ['x', 'y', 'z', 'w', 'v'].sort((p, q) => (c.score(p) < c.score(q) ? -1 : 1))
  c.hear([{ id: first, held: 1 }, { id: second, held: 1 }, { id: third, held: 1 }], 0)
  t.same(ids(c.best([], 0, 5000)), [first, second])
  c.hear([{ id: second, held: 2 }, { id: third, held: 2 }], 4000)
  t.same(ids(c.best([], 6000, 5000)), [second, third], 'the first, silent for 6 s, is stalled')
  c.hear([{ id: first, held: 1 }], 7000)
  t.same(ids(c.best([], 7000, 5000)), [second, third], 'the same count told again does not revive it')
  c.hear([{ id: first, held: 10 }], 8000)
  t.same(ids(c.best([], 20_000, 5000)), [first], 'a count that rose revives it, and holding every chunk it is never stalled')
  t.same(ids(c.best([{ id: third, held: 3, risenAt: 19_000 }], 20_000, 5000)), [first, third], 'a peer watched first-hand is live by its own gains')
  t.same(ids(c.best([], 20_000, 5000, second)), [first, second], 'a node never takes itself for stalled')
})

t.test('claims from outside are bounded: counts past the image are ignored, and few are kept', async t => {
  const c = new Candidates('image', 10, 4)
  t.equal(c.hear([{ id: 'liar', held: 11 }], 0), undefined, 'more chunks than the image has')
  t.same(c.best([], 0, 5000), [])
  const flood = Array.from({ length: 1000 }, (_, i) => `flood-${i}`)
  t.equal(c.hear(flood.map(id => ({ id, held: 0 })), 0), 'new')
  t.equal(c.best([], 0, 5000).length, 4)
  // Twice the limit are remembered, the best; the rest of a flood is forgotten (heard again, it is new).
  const byScore = [...flood].sort((p, q) => (c.score(p) < c.score(q) ? -1 : 1))
  t.equal(c.hear([{ id: byScore[7], held: 0 }], 0), undefined, 'the 8th best is remembered')
  t.equal(c.hear([{ id: byScore[8], held: 0 }], 0), 'new', 'the 9th was forgotten')
  t.equal(c.hear([{ id: 'me', held: 5 }], 0, 'me'), undefined, 'a node does not hear of itself')
})

t.test('a feed tells its subscribers of new candidates at once and of counts on the beat, and ranks itself among them', async t => {
  const clock = new VirtualClock()
  const feed = new HaveFeed('cid', 8, new Uint8Array(1), clock)
  feed.runAs('self', 4, 5000)
  const events: string[] = []
  feed.subscribe(e => { events.push(typeof e === 'string' ? e : 'chunks') })
  t.same(ids(feed.claims()), ['self'], 'alone, it is its own candidate')
  feed.hearClaims([{ id: 'far', held: 1 }])
  feed.hearClaims([{ id: 'far', held: 2 }])
  feed.hearClaims([{ id: 'far', held: 2 }])
  t.same(events, ['candidates', 'claims'], 'a new candidate, then a count that rose, then nothing')
  t.same(ids(feed.claims()).sort(), ['far', 'self'])
  t.equal(feed.claims().find(c => c.id === 'far')?.held, 2)
  feed.bits[0] = 0xe0
  feed.stored([0, 1, 2])
  t.equal(feed.claims().find(c => c.id === 'self')?.held, 3, 'its own count follows what it stored')
})

t.test('a fetching peer\'s first bitfield: its count, and its chunks as gained now', async t => {
  const clock = new VirtualClock()
  const feed = new HaveFeed('cid', 13, new Uint8Array(2), clock)
  const source = { id: 'peer', manifest: async () => undefined, have: async () => undefined, chunks: () => [] } as unknown as PeerSource
  const view = feed.setPeer(source, Uint8Array.of(0xff, 0xa8), true) // chunks 0-7, 8, 10, 12
  t.equal(view.held, 11)
  t.same([...feed.gainedAt].map(x => x === clock.now()), [true, true, true, true, true, true, true, true, true, false, true, false, true])
  feed.gained('peer', [[9, 1], [8, 1]])
  t.equal(feed.peers.get('peer')?.held, 12, 'a chunk it held already is not counted twice')
})
