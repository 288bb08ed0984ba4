import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import type { FetchJob } from '../src/fetch/fetch-job.js'
import { fileOrigin } from '../src/origin/file-origin.js'
import { rateLimitedOrigin } from '../src/origin/rate-limited-origin.js'
import { hexOf } from '../src/store/image-record.js'
import { tempDir } from './helpers/cli.js'
import { originWith, startDaemon, waitReady } from './helpers/daemons.js'
import { seededBytes } from './helpers/data.js'
import { RawNbd, infoPayload } from './helpers/nbd-client.js'

const MiB = 1024 * 1024

/** Follows a fetch: how many chunks were stored when the last of `wanted` was. */
function whenStored (job: FetchJob, wanted: number[]): Promise<{ storedThen: number, at: number }> {
  const left = new Set(wanted)
  let stored = 0
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const onChunks = (indices: number[]): void => {
      stored += indices.length
      for (const i of indices) left.delete(i)
      if (left.size === 0) {
        job.off('chunks', onChunks)
        resolve({ storedThen: stored, at: Date.now() - started })
      }
    }
    job.on('chunks', onChunks)
    job.promise.then(() => { if (left.size > 0) reject(new Error(`the fetch ended with ${left.size} profile chunks not seen`)) }, reject)
  })
}

async function waitFor<T> (what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = await fn().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > until) throw new Error(`${what}: not in ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

t.test('a profile recorded on A from range reads of an image still arriving reaches B, which fetches its chunks first; publish puts it on the origin, where C finds it', async t => {
  const bytes = seededBytes(32 * MiB + 4321, 'profile-swarm')
  const published = await originWith(t, [bytes])
  const ref = published.refs[0]
  const hex = ref.slice(7)
  const target = pathToFileURL(join(await tempDir(t), 'published')).href
  // A reads the image from a slow origin (8 MiB/s: ~4 s for the image) and serves peers at 4 MiB/s.
  const a = await startDaemon(t, {
    origin: rateLimitedOrigin(published.origin, 8 * MiB),
    config: { bootProfileWindowMs: 3000, maxUploadRate: 4 * MiB, publishOrigins: [target] }
  })

  // A "boot": reads scattered over the image's second half, while it arrives, through the HTTP range API.
  const at = [0.93, 0.62, 0.81, 0.99, 0.7, 0.88, 0.66, 0.75].map(f => Math.floor(bytes.length * f))
  for (const off of at) {
    const res = await a.client.send('GET', `/v1/images/${ref}`, { headers: { range: `bytes=${off}-${off + 511}` } })
    let body = Buffer.alloc(0)
    for await (const piece of res) body = Buffer.concat([body, piece as Buffer])
    t.ok(body.equals(bytes.subarray(off, off + 512)), `range at ${off}: right bytes`)
  }
  const profile = await waitFor('A\'s profile', async () => await a.client.call<any>('GET', `/v1/images/${ref}/profile`))
  t.ok(profile.chunks >= at.length && profile.chunks <= 2 * at.length, `A recorded ${profile.chunks} chunks (${profile.bytes} bytes, ${profile.encodedBytes} stored)`)
  const info = await a.client.call<any>('GET', `/v1/images/${ref}/info`)
  t.equal(info.profile?.chunks, profile.chunks, 'inspect shows it')
  await waitFor('A has the image', async () => (await a.client.call<any>('GET', `/v1/images/${ref}/info`)).state === 'available' ? true : undefined)

  // B: A is its only source, at 4 MiB/s (~8 s for the image).
  const b = await startDaemon(t, { bootstrap: [a.addr], config: { bootProfileWindowMs: 1000 } })
  await waitReady(b)
  const job = b.daemon.fetcher.start(ref)
  const order = profile.order as number[]
  const seen = whenStored(job, order)
  await job.promise
  const { storedThen, at: ms } = await seen
  const record = await b.daemon.local.store.resolve(ref)
  const manifest = await b.daemon.local.store.getManifest(record)
  const offsetOf = (i: number): number => {
    let off = 0
    for (let k = 0; k < i; k++) off += manifest.chunkLengths[k * 4] * 2 ** 24 + manifest.chunkLengths[k * 4 + 1] * 2 ** 16 + manifest.chunkLengths[k * 4 + 2] * 2 ** 8 + manifest.chunkLengths[k * 4 + 3]
    return off
  }
  t.same(job.status.profile, { chunks: profile.chunks, from: 'peer' }, 'B took A\'s profile from A')
  t.ok(storedThen < record.chunks / 2, `B had every profile chunk after ${ms} ms, with ${storedThen} of ${record.chunks} chunks stored (the profile lies in the image's second half)`)
  t.same((await b.client.call<any>('GET', `/v1/images/${ref}/profile`)).order, order, 'B keeps it, to pass on')
  t.equal(record.state, 'available')

  // publish: the profile goes beside the manifest; C, with only that origin, finds it there.
  const pub = await a.client.call<any>('POST', `/v1/images/${ref}/publish`, { origin: target })
  t.ok(pub.profileBytes > 0, `publish wrote the profile (${pub.profileBytes} bytes)`)
  const dir = fileURLToPath(target)
  const onDisk = await readFile(join(dir, 'sha256', `${hex}.profile`))
  t.equal(onDisk.length, pub.profileBytes, 'as sha256/<hex>.profile')
  const c = await startDaemon(t, { origin: rateLimitedOrigin(fileOrigin(target), 4 * MiB) })
  const cJob = c.daemon.fetcher.start(ref)
  const cSeen = whenStored(cJob, order)
  await cJob.promise
  const cThen = await cSeen
  t.same(cJob.status.profile, { chunks: profile.chunks, from: 'origin' }, 'C took the profile from the origin')
  t.ok(cThen.storedThen < record.chunks / 2, `C had every profile chunk after ${cThen.at} ms, with ${cThen.storedThen} of ${record.chunks} chunks stored`)
  t.equal(hexOf(await c.daemon.local.store.resolve(ref)), hex)

  // profile rm through the API, and it is gone; the next reads, over NBD, record a new one.
  t.same(await b.client.call<any>('DELETE', `/v1/images/${ref}/profile`), { ref, removed: true })
  t.equal((await b.client.call<any>('GET', `/v1/images/${ref}/info`)).profile, undefined)
  const nbd = await RawNbd.connect(join(b.dir, 'nbd.sock'))
  t.teardown(() => { nbd.close() })
  await nbd.handshake()
  nbd.option(7, infoPayload(ref))
  t.equal((await nbd.reply(30_000))?.type, 3)
  t.equal((await nbd.reply())?.type, 1)
  for (const [k, off] of [order[3], order[0]].map(i => offsetOf(i)).entries()) {
    nbd.request(0, BigInt(k + 1), BigInt(off), 512)
    t.equal((await nbd.simpleReply())?.error, 0)
    t.ok((await nbd.read(512))?.equals(bytes.subarray(off, off + 512)), 'NBD read: right bytes')
  }
  const again = await waitFor('B\'s new profile', async () => await b.client.call<any>('GET', `/v1/images/${ref}/profile`))
  t.same(again.order, [order[3], order[0]], 'recorded from NBD reads, in their order')
})
