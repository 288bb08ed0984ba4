import type tap from 'tap'
import t from 'tap'
import { verifyChunk } from '../src/chunks/cid.js'
import { chunkCount, chunkEntries } from '../src/chunks/manifest.js'
import { FetchJob } from '../src/fetch/fetch-job.js'
import { LocalNode } from '../src/local-node.js'
import { ImageReader } from '../src/serve/image-reader.js'
import { seededBytes, streamOf } from './helpers/data.js'

/*
 * The on-demand reader against a fetch job double: under a trusted manifest a read asks the fetch for
 * its chunks and returns once they are verified; under a manifest only a peer vouches for, it waits
 * for the whole-image check.
 */

async function setup (t: Parameters<Parameters<typeof tap.test>[0]>[0]): Promise<any> {
  const bytes = seededBytes(1024 * 1024 + 17, 'reader')
  const source = await LocalNode.open()
  const empty = await LocalNode.open()
  t.teardown(async () => { await source.close(); await empty.close() })
  const { record } = await source.importStream(streamOf(bytes), {})
  const manifest = await source.store.getManifest(record)
  const job = new FetchJob(record.ref)
  job.have = new Uint8Array(Math.ceil(chunkCount(manifest) / 8))
  const entries = [...chunkEntries(manifest)]
  const deliver = async (i: number): Promise<void> => {
    const e = entries[i]
    const chunk = verifyChunk(e.digest, bytes.subarray(e.offset, e.offset + e.length))
    job.chunkVerified([i], chunk.bytes)
    await empty.store.putMany([chunk])
    job.chunksStored([i])
  }
  return { bytes, record, manifest, job, entries, deliver, store: empty.store }
}

const settledWithin = async (p: Promise<unknown>, ms: number): Promise<boolean> => await Promise.race([p.then(() => true, () => true), new Promise<boolean>(resolve => setTimeout(() => resolve(false), ms))])

t.test('trusted manifest: a read asks for its chunks first and returns once they are verified', async t => {
  const { bytes, record, manifest, job, entries, deliver, store } = await setup(t)
  job.trust = 'origin'
  const reader = new ImageReader({ store, manifest, job, manifestCid: record.manifest })
  const last = entries.length - 1
  const at = entries[last].offset + 3
  const read = reader.read(at, 10)
  await new Promise(resolve => setTimeout(resolve, 20))
  t.same(job.demand.take(), [last], 'the fetch is asked for the last chunk alone')
  await deliver(last)
  const got = await read
  t.ok(got.equals(bytes.subarray(at, at + 10)), 'the bytes')
})

t.test('peer-only manifest: a read waits for the whole-image check', async t => {
  const { bytes, record, manifest, job, entries, deliver, store } = await setup(t)
  job.trust = 'peer'
  let asked = 0
  job.confirmManifest = async () => { asked++; return false }
  const reader = new ImageReader({ store, manifest, job, manifestCid: record.manifest })
  const read = reader.read(0, 100)
  await deliver(0)
  t.equal(await settledWithin(read, 300), false, 'a verified chunk is not served before the image is checked')
  t.equal(asked, 1, 'the origin was asked to confirm the manifest')
  for (let i = 1; i < entries.length; i++) await deliver(i)
  job.succeed()
  t.ok((await read).equals(bytes.subarray(0, 100)), 'served once the image checked out')

})
