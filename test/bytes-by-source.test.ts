import t from 'tap'
import { chunkEntries, encodeManifest } from '../src/chunks/manifest.js'
import { seededBytes, streamOf } from './helpers/data.js'
import { startDaemon } from './helpers/daemons.js'
import { until } from './helpers/swarm.js'

const MiB = 1024 * 1024

t.test('bytes by source: a chunk that repeats in the image is received once, so the sum is the distinct bytes (README)', async t => {
  // Runs of zeros make chunks that repeat: the image's size counts each, the bytes received one.
  const bytes = Buffer.concat([seededBytes(MiB, 'head'), Buffer.alloc(6 * MiB), seededBytes(MiB, 'tail')])
  const a = await startDaemon(t)
  const { record } = await a.client.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'sparse' } })
  const manifest = await a.daemon.local.store.getManifest(record)
  const distinct = new Map<string, number>()
  for (const e of chunkEntries(manifest)) distinct.set(Buffer.from(e.digest).toString('hex'), e.length)
  const distinctBytes = [...distinct.values()].reduce((s, n) => s + n, 0)
  t.ok(distinctBytes < bytes.length - MiB, 'the image has repeated chunks')

  const b = await startDaemon(t, { bootstrap: [a.addr] })
  await until('B is connected to A', () => b.daemon.peer.getConnections().length > 0, 20_000)
  const fetched = await b.client.call<{ ok: boolean, images: Array<{ bytes: { local: number, peer: number, origin: number } }> }>('POST', '/v1/fetch?wait=true', { refs: [record.ref] })
  t.equal(fetched.ok, true, JSON.stringify(fetched))
  const got = fetched.images[0].bytes
  // The peer's manifest counts as bytes from it too.
  const received = distinctBytes + encodeManifest(manifest).length
  t.equal(got.local + got.peer + got.origin, received, 'the bytes received add up to the distinct chunk bytes and the manifest, not the size')
  t.equal(got.peer, received, 'all from the peer')
  const info = await b.client.call<{ sources: { local: number, peers: number, origin: number } }>('GET', `/v1/images/${record.ref}/info`)
  t.same(info.sources, { local: 0, peers: received, origin: 0 }, 'the record keeps the same figures')

  // Held chunks count as local at each place they fill: a second image sharing the zeros.
  const other = Buffer.concat([seededBytes(MiB, 'other-head'), Buffer.alloc(6 * MiB)])
  const second = (await a.client.importStream(streamOf(other), { meta: { type: 'machine', name: 'other' } })).record
  const m2 = await a.daemon.local.store.getManifest(second)
  const held = new Set(distinct.keys())
  let localBytes = 0
  for (const e of chunkEntries(m2)) if (held.has(Buffer.from(e.digest).toString('hex'))) localBytes += e.length
  const again = await b.client.call<{ images: Array<{ bytes: { local: number } }> }>('POST', '/v1/fetch?wait=true', { refs: [second.ref] })
  t.equal(again.images[0].bytes.local, localBytes, 'local: the image bytes the held chunks make, each repeat counted')
  t.ok(localBytes >= 6 * MiB - 512 * 1024, 'most of the zeros')
})
