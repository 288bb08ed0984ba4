import { execFile, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { rateLimitedOrigin } from '../src/origin/rate-limited-origin.js'
import { parseNbdAddress } from '../src/serve/nbd-server.js'
import { tempDir } from './helpers/cli.js'
import { countingOrigin, originWith, startDaemon } from './helpers/daemons.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { RawNbd, infoPayload, u32 } from './helpers/nbd-client.js'

const MiB = 1024 * 1024
const qemuImg = spawnSync('qemu-img', ['--version']).status === 0
const noQemu = qemuImg ? false : 'qemu-img not found (apt-get install qemu-utils)'

/** qemu-img, run without blocking: the daemon it talks to runs in this process. */
async function qemu (args: string[]): Promise<{ code: number | null, out: string }> {
  return await new Promise(resolve => {
    execFile('qemu-img', args, { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : null, out: stdout + stderr })
    })
  })
}

t.test('--nbd: unix:PATH, loopback HOST:PORT or off; beyond loopback refused', async t => {
  t.same(parseNbdAddress(undefined, '/d'), { kind: 'unix', path: '/d/nbd.sock' })
  t.same(parseNbdAddress('unix:/run/x.sock', '/d'), { kind: 'unix', path: '/run/x.sock' })
  t.same(parseNbdAddress('127.0.0.1:10809', '/d'), { kind: 'tcp', host: '127.0.0.1', port: 10809 })
  t.same(parseNbdAddress(':10809', '/d'), { kind: 'tcp', host: '127.0.0.1', port: 10809 })
  t.equal(parseNbdAddress('off', '/d'), undefined)
  t.throws(() => parseNbdAddress('0.0.0.0:10809', '/d'), /loopback or a unix socket only/)
  t.throws(() => parseNbdAddress('nonsense', '/d'), /expected unix:PATH, HOST:PORT or off/)
})

t.test('a daemon serves its images over NBD: qemu-img reads them by digest, hex prefix and manifest CID', { skip: noQemu }, async t => {
  const d = await startDaemon(t)
  const bytes = seededBytes(5 * MiB + 12345, 'nbd-qemu')
  const { record } = await d.daemon.local.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'disk' } })
  const node = await d.client.call<any>('GET', '/v1/node')
  const sock = join(d.dir, 'nbd.sock')
  t.equal(node.nbd, `unix:${sock}`, 'GET /v1/node reports the NBD socket')
  const out = await tempDir(t)
  for (const name of [record.ref, record.ref.slice(7, 7 + 12), record.manifest]) {
    const uri = `nbd+unix:///${name}?socket=${sock}`
    const info = await qemu(['info', '--output=json', uri])
    t.equal(info.code, 0, info.out)
    // qemu counts in 512-byte sectors: the size rounded up.
    if (info.code === 0) t.equal(JSON.parse(info.out)['virtual-size'], Math.ceil(bytes.length / 512) * 512, `qemu-img info ${name.slice(0, 20)}…: the image's size`)
    const file = join(out, 'copy')
    const conv = await qemu(['convert', '-f', 'raw', '-O', 'raw', uri, file])
    t.equal(conv.code, 0, conv.out)
    const copy = await readFile(file)
    t.equal(sha256Ref(copy.subarray(0, bytes.length)), record.ref, `qemu-img convert by ${name.slice(0, 20)}…: the same bytes`)
    t.ok(copy.subarray(bytes.length).every(b => b === 0), 'then zeros to the sector\'s end')
  }
  const missing = await qemu(['info', `nbd+unix:///sha256:${'ab'.repeat(32)}?socket=${sock}`])
  t.not(missing.code, 0, 'an image no peer or origin has is refused')
  t.match(missing.out, /no reachable peer holds sha256:abab/, 'with the reason')
  const bad = await qemu(['info', `nbd+unix:///not-a-ref?socket=${sock}`])
  t.not(bad.code, 0)
  t.match(bad.out, /no image named not-a-ref/)
  t.equal(d.daemon.local.inUse.has(record.ref.slice(7)), false, 'no export open: not in use')
})

t.test('the NBD handshake and requests on the wire', async t => {
  const d = await startDaemon(t)
  const bytes = seededBytes(3 * MiB + 7, 'nbd-wire')
  const { record } = await d.daemon.local.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'disk' } })
  const c = await RawNbd.connect(join(d.dir, 'nbd.sock'))
  t.teardown(() => { c.close() })
  t.same(await c.handshake(), { magic: 'NBDMAGIC', opt: 'IHAVEOPT', flags: 3 }, 'fixed newstyle, no zeroes')

  c.option(3) // LIST
  const listed = await c.reply()
  t.equal(listed?.type, 2, 'NBD_REP_SERVER')
  t.equal(listed?.data.subarray(4).toString(), record.ref, 'lists the image by its digest')
  t.equal((await c.reply())?.type, 1, 'then NBD_REP_ACK')

  c.option(9) // LIST_META_CONTEXT
  t.equal((await c.reply())?.type, 0x80000001, 'meta contexts: NBD_REP_ERR_UNSUP')

  c.option(6, infoPayload('sha256:' + '00'.repeat(32)))
  const unknown = await c.reply()
  t.equal(unknown?.type, 0x80000006, 'INFO of an image nobody has: NBD_REP_ERR_UNKNOWN')
  t.match(unknown?.data.toString() ?? '', /sha256:0000/, 'with a message')

  c.option(6, Buffer.from([0, 0, 0, 9, 1]))
  t.equal((await c.reply())?.type, 0x80000003, 'a malformed INFO: NBD_REP_ERR_INVALID')

  c.option(7, infoPayload(record.manifest, [3]))
  const exp = await c.reply()
  t.equal(exp?.type, 3, 'NBD_REP_INFO')
  t.equal(exp?.data.readUInt16BE(0), 0, 'NBD_INFO_EXPORT')
  t.equal(Number(exp?.data.readBigUInt64BE(2)), bytes.length, 'the size')
  t.equal(exp?.data.readUInt16BE(10), 1 | 2 | 4 | 256, 'read-only, flush, multi-conn')
  const bs = await c.reply()
  t.equal(bs?.data.readUInt16BE(0), 3, 'NBD_INFO_BLOCK_SIZE, as asked')
  t.equal(bs?.data.readUInt32BE(10), 32 * MiB, 'reads up to 32 MiB')
  t.equal((await c.reply())?.type, 1, 'NBD_REP_ACK: transmission begins')
  t.equal(d.daemon.local.inUse.has(record.ref.slice(7)), true, 'an open export keeps its image in use')

  const read = async (handle: bigint, offset: number, length: number): Promise<{ error?: number, data?: Buffer }> => {
    c.request(0, handle, BigInt(offset), length)
    const r = await c.simpleReply()
    if (r == null) return {}
    t.equal(r.handle, handle)
    return { error: r.error, data: r.error === 0 ? await c.read(length) : undefined }
  }
  const a = await read(1n, 1_000_000, 300_000)
  t.equal(a.error, 0)
  t.ok(a.data?.equals(bytes.subarray(1_000_000, 1_300_000)), 'a read across chunks: the image\'s bytes')
  const tail = await read(2n, bytes.length - 5, 5)
  t.ok(tail.data?.equals(bytes.subarray(bytes.length - 5)), 'the last bytes')
  t.equal((await read(3n, bytes.length - 5, 6)).error, 22, 'past the end: EINVAL')
  t.equal((await read(4n, 0, 32 * MiB + 1)).error, 22, 'over 32 MiB: EINVAL')
  t.equal((await read(5n, 0, 0)).error, 22, 'zero length: EINVAL')
  c.request(1, 6n, 0n, 4, Buffer.from('evil'))
  t.equal((await c.simpleReply())?.error, 1, 'a write: EPERM')
  c.request(3, 7n, 0n, 0)
  t.equal((await c.simpleReply())?.error, 0, 'flush: done')
  c.request(4, 8n, 0n, 4096)
  t.equal((await c.simpleReply())?.error, 1, 'trim: EPERM')
  c.request(7, 9n, 0n, 4096)
  t.equal((await c.simpleReply())?.error, 22, 'block status (not negotiated): EINVAL')
  const again = await read(10n, 0, 4096)
  t.ok(again.data?.equals(bytes.subarray(0, 4096)), 'still serving after the refusals')
  c.request(2, 11n, 0n, 0)
  t.ok(await c.closedWithin(3000), 'NBD_CMD_DISC: the server closes')
  for (let i = 0; i < 50 && d.daemon.local.inUse.has(record.ref.slice(7)); i++) await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(d.daemon.local.inUse.has(record.ref.slice(7)), false, 'closed: no longer in use')

  // Structured replies (qemu asks for them): a read is one OFFSET_DATA chunk, an error an ERROR chunk with a message.
  const sr = await RawNbd.connect(join(d.dir, 'nbd.sock'))
  await sr.handshake()
  sr.option(8)
  t.equal((await sr.reply())?.type, 1, 'NBD_OPT_STRUCTURED_REPLY: acknowledged')
  sr.option(7, infoPayload(record.ref))
  await sr.reply()
  t.equal((await sr.reply())?.type, 1)
  sr.request(0, 21n, 777n, 1000)
  const h = await sr.read(20)
  t.equal(h?.readUInt32BE(0), 0x668e33ef, 'structured reply magic')
  t.equal(h?.readUInt16BE(4), 1, 'NBD_REPLY_FLAG_DONE')
  t.equal(h?.readUInt16BE(6), 1, 'NBD_REPLY_TYPE_OFFSET_DATA')
  t.equal(h?.readUInt32BE(16), 1008)
  const payload = await sr.read(1008)
  t.equal(Number(payload?.readBigUInt64BE(0)), 777, 'its offset')
  t.ok(payload?.subarray(8).equals(bytes.subarray(777, 1777)), 'its bytes')
  sr.request(0, 22n, BigInt(bytes.length), 1)
  const eh = await sr.read(20)
  t.equal(eh?.readUInt16BE(6), 32769, 'NBD_REPLY_TYPE_ERROR')
  const ep = await sr.read(eh?.readUInt32BE(16) ?? 0)
  t.equal(ep?.readUInt32BE(0), 22, 'EINVAL')
  t.match(ep?.subarray(6).toString() ?? '', /inside the image's 3145735 bytes/, 'with a message')
  sr.close()

  const bad = await RawNbd.connect(join(d.dir, 'nbd.sock'))
  await bad.handshake()
  bad.write(Buffer.concat([Buffer.from('IHAVEOPX'), u32(7), u32(0)]))
  t.ok(await bad.closedWithin(3000), 'a wrong option magic: closed')
  bad.close()
  const abort = await RawNbd.connect(join(d.dir, 'nbd.sock'))
  await abort.handshake()
  abort.option(2)
  t.equal((await abort.reply())?.type, 1, 'NBD_OPT_ABORT: acknowledged')
  t.ok(await abort.closedWithin(3000), 'and closed')
  abort.close()
})

t.test('reads of an image still arriving fetch their chunks first; HTTP ranges too', async t => {
  const bytes = seededBytes(24 * MiB + 99, 'nbd-lazy')
  const published = await originWith(t, [bytes])
  const { origin, counts } = countingOrigin(published.origin)
  // 4 MiB/s: the whole image takes ~6 s to arrive.
  const d = await startDaemon(t, { origin: rateLimitedOrigin(origin, 4 * MiB) })
  const ref = published.refs[0]
  const c = await RawNbd.connect(join(d.dir, 'nbd.sock'))
  t.teardown(() => { c.close() })
  await c.handshake()
  const started = Date.now()
  c.option(7, infoPayload(ref))
  t.equal((await c.reply(30_000))?.type, 3, 'GO of an image the node does not hold: it starts the fetch and answers')
  t.equal((await c.reply())?.type, 1)
  const at = bytes.length - 100_000
  c.request(0, 1n, BigInt(at), 70_000)
  const r = await c.simpleReply()
  t.equal(r?.error, 0)
  const data = await c.read(70_000)
  const took = Date.now() - started
  t.ok(data?.equals(bytes.subarray(at, at + 70_000)), 'the last bytes of the image, right')
  t.ok(counts.bytes < bytes.length / 2, `read after ${took} ms with ${(counts.bytes / MiB).toFixed(1)} MiB of ${(bytes.length / MiB).toFixed(1)} MiB from the origin`)
  t.ok(took < 4000, `answered in ${took} ms, before the image could arrive (~6 s)`)

  const t0 = Date.now()
  const res = await d.client.send('GET', `/v1/images/${ref}`, { headers: { range: `bytes=${bytes.length - 3_000_100}-${bytes.length - 3_000_001}` } })
  let body = Buffer.alloc(0)
  for await (const piece of res) body = Buffer.concat([body, piece as Buffer])
  t.ok(body.equals(bytes.subarray(bytes.length - 3_000_100, bytes.length - 3_000_000)), 'an HTTP range of the image while it arrives: right bytes')
  const state = (await d.client.call<any>('GET', `/v1/images/${ref}/info`)).state
  t.comment(`HTTP range of 100 bytes: ${Date.now() - t0} ms; the image is ${state}`)
  t.equal(state, 'fetching', 'served before the image arrived')

  // The whole image still arrives and checks out.
  for (let i = 0; i < 300 && (await d.client.call<any>('GET', `/v1/images/${ref}/info`)).state === 'fetching'; i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.equal((await d.client.call<any>('GET', `/v1/images/${ref}/info`)).state, 'available')
  c.request(0, 2n, 0n, 4096)
  t.equal((await c.simpleReply())?.error, 0)
  t.ok((await c.read(4096))?.equals(bytes.subarray(0, 4096)), 'and reads go on from the store')
  t.ok(counts.bytes < bytes.length * 1.2, `origin bytes in all: ${counts.bytes} for ${bytes.length} (urgent chunks may come twice, at most a few)`)
  t.equal(createHash('sha256').update(bytes).digest('hex'), ref.slice(7))
})
