import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { breakingOrigin, countingOrigin, metric, originWith, startDaemon, waitReady } from './helpers/daemons.js'

t.test('B gets an image that A holds while the origin sees no read at all', async t => {
  const bytes = seededBytes(24 * 1024 * 1024 + 123, 'p2p')
  const { origin: inner } = await originWith(t, [])
  const { origin, counts } = countingOrigin(inner)
  const a = await startDaemon(t)
  const { record } = await a.client.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'img' } })
  const b = await startDaemon(t, { bootstrap: [a.addr], origin })
  await waitReady(b)
  const out = join(await tempDir(t), 'got.img')
  await b.client.export(record.ref, out)
  t.ok((await readFile(out)).equals(bytes), 'B wrote the exact bytes')
  t.same({ reads: counts.reads, bytes: counts.bytes }, { reads: 0, bytes: 0 }, 'no image byte came from the origin')
  t.ok(counts.manifests <= 1 && counts.stats <= 1, 'the origin was asked at most once for its manifest and size, to check A\'s claim')
  t.equal((await b.client.inspect(record.ref)).state, 'available')
  t.ok(await metric(b.client, 'imgswarm_fetched_bytes_total', '{source="peer"}') >= bytes.length, 'peer bytes counted')
  t.equal(await metric(b.client, 'imgswarm_fetched_bytes_total', '{source="origin"}'), 0)
})

t.test('C gets an image A holds part of: A\'s chunks from A, only the rest from the origin', async t => {
  const size = 16 * 1024 * 1024
  const full = seededBytes(size, 'part')
  const { origin: inner, refs: [ref] } = await originWith(t, [full])
  // A's origin breaks after 8 MiB, so A ends with part of the image (its fetch failed).
  const cut = breakingOrigin(inner, 8 * 1024 * 1024)
  const a = await startDaemon(t, { origin: cut })
  const partial = await a.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })
  t.equal(partial.ok, false, 'A could not finish')
  const held = (await a.daemon.local.store.chunkStats()).bytes
  t.ok(held >= 4 * 1024 * 1024 && held < size, `A holds ${held} bytes of the image`)

  const { origin, counts } = countingOrigin(inner)
  const c = await startDaemon(t, { bootstrap: [a.addr], origin })
  await waitReady(c)
  const res = await c.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })
  t.equal(res.ok, true, JSON.stringify(res))
  const status = res.images[0]
  t.equal(status.bytes.peer, held, 'every chunk A holds came from A')
  t.equal(status.bytes.origin, counts.bytes, 'the status counts the origin\'s image bytes; its manifest is counted apart')
  t.equal(await metric(c.client, 'imgswarm_origin_metadata_bytes_total', ''), counts.manifestBytes, 'the manifest read is metadata')
  t.ok(counts.bytes >= size - held && counts.bytes <= size - held + 512 * 1024, `the origin sent ${counts.bytes} bytes for the ${size - held} A lacks`)
  const out = join(await tempDir(t), 'c.img')
  await c.client.export(ref, out)
  t.equal(sha256Ref(await readFile(out)), ref)
})

t.test('five concurrent gets of one image on one node make one fetch', async t => {
  const bytes = seededBytes(8 * 1024 * 1024, 'five')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin, counts } = countingOrigin(inner)
  const b = await startDaemon(t, { origin })
  const dir = await tempDir(t)
  await Promise.all([0, 1, 2, 3, 4].map(async i => { await b.client.export(ref, join(dir, `out${i}`)) }))
  for (let i = 0; i < 5; i++) t.equal(sha256Ref(await readFile(join(dir, `out${i}`))), ref, `get ${i} is byte-exact`)
  t.equal(counts.manifests, 1, 'the manifest was read once')
  t.ok(counts.bytes <= bytes.length, `the origin sent ${counts.bytes} bytes: one copy at most`)
})

t.test('no peer holds the image and the origin is down: a clear error, the image failed', async t => {
  const bytes = seededBytes(2 * 1024 * 1024, 'down')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  let down = false
  const { origin } = countingOrigin(inner)
  const flaky = { ...origin, read: (hex: string, o?: any) => { if (down) throw new Error('connect ECONNREFUSED 127.0.0.1:9'); return origin.read(hex, o) } }
  const b = await startDaemon(t, { origin: flaky })
  down = true
  const res = await b.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })
  t.equal(res.ok, false)
  t.match(res.images[0].error, /ECONNREFUSED/)
  t.equal((await b.client.inspect(ref)).state, 'failed')
  t.match((await b.client.inspect(ref)).reason, /ECONNREFUSED/)
  await t.rejects(b.client.export(ref, join(await tempDir(t), 'x')), /ECONNREFUSED/)
})

t.test('an image nobody has: not found, naming the ref and the origin', async t => {
  const { origin } = await originWith(t, [])
  const b = await startDaemon(t, { origin })
  const ref = sha256Ref(Buffer.from('nobody has this'))
  await t.rejects(b.client.export(ref, join(await tempDir(t), 'x')), new RegExp(`no reachable peer holds ${ref} and the origin file://.* does not have it`))
})

t.test('a GET of an image being fetched sends its first bytes before the fetch ends, and the exact image', async t => {
  const bytes = seededBytes(12 * 1024 * 1024, 'stream-early')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin } = countingOrigin(inner)
  // An origin that sends a range in 256 KiB pieces, 20 ms apart: the fetch takes about a second.
  const slow = {
    ...origin,
    read: (hex: string, o?: any) => ({
      async * [Symbol.asyncIterator] () {
        for await (const piece of origin.read(hex, o)) {
          for (let p = 0; p < piece.length; p += 256 * 1024) {
            await new Promise(resolve => setTimeout(resolve, 20))
            yield piece.subarray(p, p + 256 * 1024)
          }
        }
      }
    })
  }
  const b = await startDaemon(t, { origin: slow })
  const res = await b.client.send('GET', `/v1/images/${ref}`)
  t.equal(res.statusCode, 200)
  const parts: Buffer[] = []
  let stateAtFirstByte: string | undefined
  for await (const piece of res) {
    if (parts.length === 0) stateAtFirstByte = (await b.client.inspect(ref)).state
    parts.push(piece as Buffer)
  }
  t.equal(stateAtFirstByte, 'fetching', 'the first bytes came while the image was still being fetched')
  t.equal(res.complete, true)
  t.ok(Buffer.concat(parts).equals(bytes), 'the streamed bytes are the image')
})
