import { createHash } from 'node:crypto'
import { createServer, connect, type Socket, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { gatherReads, SMALL_READ_BYTES } from '../src/peer/gathered-reads.js'

/** A connected pair of sockets on 127.0.0.1: [the writer, the reader]. */
async function socketPair (): Promise<[Socket, Socket, () => Promise<void>]> {
  const server = createServer()
  const accepted = new Promise<Socket>(resolve => server.once('connection', resolve))
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const writer = connect((server.address() as AddressInfo).port, '127.0.0.1')
  writer.setNoDelay(true)
  const reader = await accepted
  return [writer, reader, async () => {
    writer.destroy()
    reader.destroy()
    await new Promise(resolve => server.close(resolve))
  }]
}

/** Writes `pieces` pieces of 1 KiB, one every ms, and resolves to the digest of all of it. */
async function trickle (writer: Socket, pieces: number): Promise<string> {
  const hash = createHash('sha256')
  for (let i = 0; i < pieces; i++) {
    const piece = Buffer.alloc(1024, i % 251)
    hash.update(piece)
    writer.write(piece)
    await sleep(1)
  }
  return hash.digest('hex')
}

t.test('small reads pause the socket for the gathering time; every byte arrives in order', async t => {
  const [writer, reader, close] = await socketPair()
  t.teardown(close)
  const waitMs = 10
  t.equal(gatherReads({ socket: reader, readStatus: 'readable' }, { waitMs }), true)
  const reads: Array<{ at: number, bytes: number }> = []
  const got = createHash('sha256')
  let total = 0
  reader.on('data', (buf: Buffer) => { reads.push({ at: performance.now(), bytes: buf.byteLength }); got.update(buf); total += buf.byteLength })
  const sent = await trickle(writer, 200)
  for (let i = 0; i < 200 && total < 200 * 1024; i++) await sleep(10)
  t.equal(total, 200 * 1024, 'every byte arrived')
  t.equal(got.digest('hex'), sent, 'in order')
  // Timers may fire up to a millisecond early by rounding; the next read after a small one waits.
  const early = reads.slice(1).filter((r, i) => reads[i].bytes < SMALL_READ_BYTES && r.at - reads[i].at < waitMs - 1.5)
  t.same(early, [], 'no read within the gathering time after a small one')
  t.ok(reads.length < 200 / 2, `the 200 writes arrived in ${reads.length} reads`)
})

t.test('a socket libp2p paused meanwhile stays paused until libp2p resumes it', async t => {
  const [writer, reader, close] = await socketPair()
  t.teardown(close)
  const connection = { socket: reader, readStatus: 'readable' }
  gatherReads(connection, { waitMs: 5 })
  let total = 0
  reader.on('data', (buf: Buffer) => {
    total += buf.byteLength
    connection.readStatus = 'paused' // as libp2p's pause() marks it, here after the first read
  })
  writer.write(Buffer.alloc(100))
  for (let i = 0; i < 100 && total === 0; i++) await sleep(5)
  t.equal(total, 100)
  writer.write(Buffer.alloc(100))
  await sleep(50)
  t.equal(total, 100, 'nothing read while paused')
  connection.readStatus = 'readable'
  reader.resume()
  for (let i = 0; i < 100 && total < 200; i++) await sleep(5)
  t.equal(total, 200, 'read once resumed')
})

t.test('a large read never pauses; a connection without a socket is left alone', async t => {
  const [writer, reader, close] = await socketPair()
  t.teardown(close)
  gatherReads({ socket: reader, readStatus: 'readable' }, { waitMs: 60_000, smallBytes: 1 })
  let total = 0
  reader.on('data', (buf: Buffer) => { total += buf.byteLength })
  for (let i = 0; i < 5; i++) {
    writer.write(Buffer.alloc(4096))
    await sleep(5)
  }
  for (let i = 0; i < 100 && total < 5 * 4096; i++) await sleep(5)
  t.equal(total, 5 * 4096, 'reads of at least smallBytes never wait the (here one-minute) gathering time')
  t.equal(gatherReads({}), false)
  t.equal(gatherReads({ socket: {} }), false)
})
