import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create } from 'multiformats/hashes/digest'
import type { Test } from 'tap'
import type { HaveFeeds } from '../../src/fetch/have-feeds.js'
import { HaveFeed } from '../../src/fetch/have-feeds.js'
import { hasBit, setBit, type ChunkReply, type PeerSource } from '../../src/fetch/sources.js'

/** The image a fixture's remote peer holds whole, as the suite checks it. */
export interface HeldImage {
  hex: string
  manifestCid: string
  manifestBytes: Uint8Array
  /** Chunk i, in image order. */
  chunks: Array<{ digest: Uint8Array, bytes: Uint8Array }>
}

export interface PeerSourceFixture {
  /** The remote peer as a source, seen from the local node. */
  source: PeerSource
  /** What the remote peer holds whole (an available image). */
  held: HeldImage
  /** The id of the local node, as the remote peer sees it. */
  localId: string
  /** The remote's fetches (its have-feeds): the suite opens one to act as a peer fetching an image. */
  remoteFeeds: HaveFeeds
  teardown: () => Promise<void>
}

export interface PeerSourceSuiteOptions {
  name: string
  /** A local node and a remote one that holds an image whole; called once per test. */
  setup: () => Promise<PeerSourceFixture>
  /** Waits (in real time) until `fn` holds. */
  waitFor: (fn: () => boolean, ms: number, what: string) => Promise<void>
}

async function collect (it: AsyncIterable<ChunkReply>): Promise<ChunkReply[]> {
  const out: ChunkReply[] = []
  for await (const r of it) out.push(r)
  return out
}

/** A manifest CID no peer knows (a valid one: the libp2p transport parses it). */
const UNKNOWN_CID = CID.create(1, 0x71, create(0x12, createHash('sha256').update('no such manifest').digest())).toString()

/**
 * The behaviour every PeerSource must have, as the fetch scheduler relies on it: the libp2p source
 * and the in-memory fake both run it. It checks what the wire carries, not how fast.
 */
export function peerSourceSuite (t: Test, options: PeerSourceSuiteOptions): void {
  t.test(`${options.name}: PeerSource compliance`, async t => {
    const open = async (t: Test): Promise<PeerSourceFixture> => {
      const f = await options.setup()
      t.teardown(f.teardown)
      return f
    }

    t.test('a manifest by digest or by manifest CID; undefined for one it lacks', async t => {
      const f = await open(t)
      t.same(Buffer.from((await f.source.manifest({ hex: f.held.hex }))!), Buffer.from(f.held.manifestBytes), 'by digest')
      t.same(Buffer.from((await f.source.manifest({ cid: f.held.manifestCid }))!), Buffer.from(f.held.manifestBytes), 'by CID')
      t.equal(await f.source.manifest({ hex: '00'.repeat(32) }), undefined)
      t.equal(await f.source.manifest({ cid: UNKNOWN_CID }), undefined)
    })

    t.test('have: every bit of an image held whole, not fetching; undefined for an unknown manifest', async t => {
      const f = await open(t)
      const n = f.held.chunks.length
      const answer = await f.source.have(f.held.manifestCid, n)
      t.ok(answer != null)
      t.equal(answer!.fetching, false)
      t.equal(answer!.bits.length, Math.ceil(n / 8))
      t.ok(Array.from({ length: n }, (_, i) => hasBit(answer!.bits, i)).every(Boolean), 'all bits set')
      t.equal(await f.source.have(UNKNOWN_CID, n), undefined)
    })

    t.test('chunks come in request order, across protocol batches, with "missing" for the absent ones', async t => {
      const f = await open(t)
      const absent = new Uint8Array(32).fill(7)
      const order = [...f.held.chunks].reverse()
      // More than one wire batch (256 digests): the same chunks asked for again and again.
      const asked: Uint8Array[] = []
      while (asked.length < 300) asked.push(...order.map(c => c.digest), absent)
      const replies = await collect(f.source.chunks(asked))
      t.equal(replies.length, asked.length, 'one reply a digest')
      let ok = true
      replies.forEach((r, i) => {
        if (!Buffer.from(r.digest).equals(asked[i])) ok = false
        if (Buffer.from(asked[i]).equals(absent)) { if (!('missing' in r)) ok = false; return }
        const want = f.held.chunks.find(c => Buffer.from(c.digest).equals(asked[i]))!
        if (!('bytes' in r) || !Buffer.from(r.bytes).equals(want.bytes)) ok = false
      })
      t.ok(ok, 'each reply names its digest, holds its bytes or says missing')
    })

    t.test('an aborted request rejects', async t => {
      const f = await open(t)
      const c = new AbortController()
      c.abort(new DOMException('stop', 'AbortError'))
      await t.rejects(collect(f.source.chunks([f.held.chunks[0].digest], { signal: c.signal })))
    })

    t.test('watchHave, peer not fetching: its bitfield once, then the watch ends; false for an unknown image', async t => {
      const f = await open(t)
      if (f.source.watchHave == null) { t.pass('no have-updates: skipped'); return }
      const n = f.held.chunks.length
      const feed = new HaveFeed(f.held.manifestCid, n, new Uint8Array(Math.ceil(n / 8)))
      t.equal(await f.source.watchHave(feed), true)
      const view = feed.peers.get(f.source.id)
      t.ok(view != null, 'its view is kept')
      t.equal(view!.fetching, false)
      t.equal(view!.live, false, 'the watch has ended')
      t.ok(Array.from({ length: n }, (_, i) => hasBit(view!.have, i)).every(Boolean))
      const other = new HaveFeed(UNKNOWN_CID, n, new Uint8Array(Math.ceil(n / 8)))
      t.equal(await f.source.watchHave(other), false)
      t.equal(other.peers.size, 0)
    })

    t.test('watchHave, peer fetching: bitfields both ways, then each side\'s new chunks, then "complete" ends it', async t => {
      const f = await open(t)
      if (f.source.watchHave == null) { t.pass('no have-updates: skipped'); return }
      const n = 20
      const cid = f.held.manifestCid // any CID works; the remote fetches it now
      const theirBits = new Uint8Array(3)
      setBit(theirBits, 0)
      const theirs = f.remoteFeeds.open(cid, n, theirBits)
      const mineBits = new Uint8Array(3)
      setBit(mineBits, 19)
      const mine = new HaveFeed(cid, n, mineBits)
      const watching = f.source.watchHave(mine, { signal: AbortSignal.timeout(20_000) })
      await options.waitFor(() => mine.peers.get(f.source.id) != null, 10_000, 'the bitfield')
      t.equal(mine.peers.get(f.source.id)!.fetching, true)
      t.ok(hasBit(mine.peers.get(f.source.id)!.have, 0))
      await options.waitFor(() => theirs.peers.get(f.localId) != null, 10_000, 'our bitfield there')
      t.ok(hasBit(theirs.peers.get(f.localId)!.have, 19), 'ours went the other way')
      setBit(theirBits, 1)
      theirs.stored([1])
      await options.waitFor(() => hasBit(mine.peers.get(f.source.id)!.have, 1), 5000, 'their update')
      setBit(mineBits, 4)
      mine.stored([4])
      await options.waitFor(() => hasBit(theirs.peers.get(f.localId)!.have, 4), 5000, 'our update')
      f.remoteFeeds.close(theirs, true)
      t.equal(await watching, true)
      const view = mine.peers.get(f.source.id)!
      t.equal(view.fetching, false, 'complete')
      t.ok(Array.from({ length: n }, (_, i) => hasBit(view.have, i)).every(Boolean))
    })
  })
}
