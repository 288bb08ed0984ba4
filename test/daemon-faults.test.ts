import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { breakingOrigin, countingOrigin, originWith, startDaemon, waitReady } from './helpers/daemons.js'
import { startEvilPeer } from './helpers/evil-peer.js'
import { asUserUnavailable, curlAs } from './helpers/as-user.js'
import type { TestDaemon } from './helpers/daemons.js'
import type { ImageEvent } from '../src/node/image-events.js'

async function metricsText (d: TestDaemon): Promise<string> {
  return Buffer.concat(await (await d.client.send('GET', '/metrics')).toArray()).toString()
}

t.test('a peer serving corrupted chunks: the image still arrives byte-exact and the peer is counted', async t => {
  const bytes = seededBytes(6 * 1024 * 1024, 'corrupt')
  const { origin, refs: [ref] } = await originWith(t, [bytes])
  const evil = await startEvilPeer(t, bytes, { corrupt: true })
  const b = await startDaemon(t, { bootstrap: [evil.addr], origin })
  await waitReady(b)
  const res = await b.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })
  t.equal(res.ok, true, JSON.stringify(res.images[0].error))
  t.ok(res.images[0].badChunks >= 1, `${res.images[0].badChunks} bad chunks counted`)
  const out = join(await tempDir(t), 'x')
  await b.client.export(ref, out)
  t.equal(sha256Ref(await readFile(out)), ref, 'byte-exact')
  const metrics = await (await b.client.send('GET', '/metrics')).toArray()
  t.match(Buffer.concat(metrics).toString(), /imgswarm_chunk_verification_failures_total [1-9]/)
})

t.test('a peer that lies about a manifest: no wrong image is ever available', async t => {
  const real = seededBytes(3 * 1024 * 1024, 'real')
  const other = seededBytes(3 * 1024 * 1024, 'other')
  const claim = sha256Ref(real)

  t.test('without an origin the fetch fails with the digest mismatch', async t => {
    const evil = await startEvilPeer(t, other, { lie: claim })
    const b = await startDaemon(t, { bootstrap: [evil.addr] })
    await waitReady(b)
    const res = await b.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [claim] })
    t.equal(res.ok, false)
    t.match(res.images[0].error, /hashes to sha256:[0-9a-f]{64}, not sha256:/)
    await t.rejects(b.client.inspect(claim), { code: 'IMGSWARM_IMAGE_NOT_FOUND' }, 'no record keeps the liar\'s name or format')
    const out = join(await tempDir(t), 'x')
    await t.rejects(b.client.export(claim, out), /no reachable peer holds/, 'a get tries again: the liar, remembered, is not asked again')
    await t.rejects(readFile(out), { code: 'ENOENT' }, 'no output file')
    t.match(await metricsText(b), /imgswarm_lying_peers_total [1-9]/, 'the liar is counted')
  })

  t.test('a compute agent streaming the image never sees a clean end of the liar\'s bytes', { skip: asUserUnavailable() }, async t => {
    const evil = await startEvilPeer(t, other, { lie: claim })
    const b = await startDaemon(t, { bootstrap: [evil.addr] })
    await waitReady(b)
    const out = join(await tempDir(t), 'x')
    const curl = await curlAs('root', ['-f', '-o', out, `http://127.0.0.1:${(b.client.address as { port: number }).port}/v1/images/${claim}`])
    t.not(curl.code, 0, `curl exits ${String(curl.code)}, not 0`)
    const got = await readFile(out).catch(() => Buffer.alloc(0))
    t.ok(got.length < other.length, `the body stopped short of its Content-Length (${got.length} of ${other.length} bytes)`)
  })

  t.test('with an origin the node falls back to the origin\'s bytes', async t => {
    const { origin: inner } = await originWith(t, [real], { manifests: false })
    const { origin, counts } = countingOrigin(inner)
    const evil = await startEvilPeer(t, other, { lie: claim })
    const b = await startDaemon(t, { bootstrap: [evil.addr], origin })
    await waitReady(b)
    const res = await b.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [claim] })
    t.equal(res.ok, true, JSON.stringify(res.images[0].error))
    const out = join(await tempDir(t), 'x')
    await b.client.export(claim, out)
    t.ok((await readFile(out)).equals(real), 'the real image, from the origin')
    t.ok(counts.bytes >= real.length, 'read whole from the origin')
  })

  t.test('a compute agent streaming under the liar\'s manifest is cut short, though the fetch then succeeds from the origin', { skip: asUserUnavailable() }, async t => {
    const { origin } = await originWith(t, [real], { manifests: false })
    const evil = await startEvilPeer(t, other, { lie: claim })
    const b = await startDaemon(t, { bootstrap: [evil.addr], origin })
    await waitReady(b)
    const out = join(await tempDir(t), 'x')
    const curl = await curlAs('root', ['-f', '-o', out, `http://127.0.0.1:${(b.client.address as { port: number }).port}/v1/images/${claim}`])
    t.not(curl.code, 0, `curl exits ${String(curl.code)}, not 0`)
    const got = await readFile(out).catch(() => Buffer.alloc(0))
    t.ok(got.length < other.length, `the body stopped short of its Content-Length (${got.length} of ${other.length} bytes)`)
    const until = Date.now() + 20_000
    while ((await b.client.inspect(claim).catch(() => undefined))?.state !== 'available' && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
    const again = join(await tempDir(t), 'y')
    await b.client.export(claim, again)
    t.ok((await readFile(again)).equals(real), 'the fetch went on to the real image, from the origin')
  })
})

t.test('an image read whole from an origin without manifests ends like any fetch: an available event at once', async t => {
  const bytes = seededBytes(2 * 1024 * 1024, 'whole-stream')
  const { origin, refs: [ref] } = await originWith(t, [bytes], { manifests: false })
  const b = await startDaemon(t, { origin })
  const events: ImageEvent[] = []
  b.daemon.events.subscribe(e => { events.push(e) })
  const res = await b.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })
  t.equal(res.ok, true, JSON.stringify(res.images[0].error))
  t.same(events.filter(e => e.record.ref === ref).map(e => e.kind), ['available'], 'the event stream heard of it when the fetch ended, not at the next sweep')
})

t.test('a peer killed mid-transfer: the fetch completes from the origin', async t => {
  const bytes = seededBytes(48 * 1024 * 1024, 'killed')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin, counts } = countingOrigin(inner)
  const a = await startDaemon(t)
  await a.client.importStream(streamOf(bytes))
  const b = await startDaemon(t, { bootstrap: [a.addr], origin })
  await waitReady(b)
  const job = b.daemon.fetcher.start(ref)
  await new Promise<void>(resolve => job.once('chunks', () => resolve()))
  await a.daemon.stop()
  await job.promise
  t.equal(job.status.state, 'available')
  t.ok(job.status.bytes.peer > 0, `${job.status.bytes.peer} bytes came from A before it died`)
  t.ok(counts.bytes > 0, `${counts.bytes} bytes came from the origin after`)
  t.ok(job.status.bytes.peer + counts.bytes < bytes.length + 16 * 1024 * 1024, 'no more than one in-flight window fetched twice')
  const out = join(await tempDir(t), 'x')
  await b.client.export(ref, out)
  t.equal(sha256Ref(await readFile(out)), ref)
})

t.test('a restarted daemon resumes an unfinished fetch from the chunks it holds', async t => {
  const bytes = seededBytes(12 * 1024 * 1024, 'resume')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const breaking = breakingOrigin(inner, 5 * 1024 * 1024)
  const first = await startDaemon(t, { origin: breaking })
  const res = await first.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })
  t.equal(res.ok, false)
  await first.daemon.stop()
  // Simulate a crash mid-fetch: the record says fetching, as it did while the fetch ran.
  const { LocalNode } = await import('../src/local-node.js')
  const node = await LocalNode.open({ dir: first.dir })
  await node.store.updateRecord(ref, { state: 'fetching' })
  const held = (await node.store.chunkStats()).bytes
  await node.close()
  const { origin, counts } = countingOrigin(inner)
  const again = await startDaemon(t, { origin, config: { data: first.dir } })
  const until = Date.now() + 20_000
  while ((await again.client.inspect(ref)).state !== 'available' && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
  t.equal((await again.client.inspect(ref)).state, 'available', 'resumed by itself after restart')
  t.ok(counts.bytes <= bytes.length - held + 512 * 1024, `only the missing part was read again (${counts.bytes} of ${bytes.length}; ${held} held)`)
})
