import '../src/util/polyfills.js'
import t from 'tap'
import { PeerStreamError, PeerTimeoutError, PeerUnreachableError, ProtocolError, ProtocolUnsupportedError } from '../src/errors.js'
import { handle, onlyFrame, request, type FrameProtocol } from '../src/peer/exchange.js'
import { encodeVarint } from '../src/peer/frames.js'
import type { PeerNode } from '../src/peer/libp2p-node.js'
import { spawnPeers, waitFor } from './helpers/peers.js'

const ECHO: FrameProtocol = { id: '/imgswarm-test/echo/1.0.0', maxRequestFrameBytes: 1024, maxResponseFrameBytes: 1024 }
const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

async function collect (it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const f of it) out.push(f)
  return out
}

async function echo (node: PeerNode, errors: Error[] = []): Promise<void> {
  await handle(node, ECHO, async (frames, send) => {
    for await (const f of frames) await send(f)
  }, { onError: err => { errors.push(err) } })
}

/** Opens a raw stream and sends bytes that bypass the framing layer's own checks. */
async function sendRaw (from: PeerNode, to: PeerNode, protocol: string, bytes: Uint8Array): Promise<Error | undefined> {
  const stream = await from.dialProtocol(to.peerId, protocol)
  const closed = new Promise<Error | undefined>(resolve => stream.addEventListener('close', evt => { resolve(evt.error) }, { once: true }))
  stream.send(bytes)
  return await closed
}

t.test('two nodes connect and exchange frames', async t => {
  const [a, b] = await spawnPeers(t, 2)
  await echo(b)
  const got = await collect(request(a, b.getMultiaddrs(), ECHO, ['one', 'two', '', 'three'].map(enc)))
  t.same(got.map(dec), ['one', 'two', '', 'three'], 'frames come back in order, the empty one too')
  t.equal(a.getConnections(b.peerId).length, 1, 'one connection')
})

t.test('an oversized frame resets only that stream; the connection stays usable', async t => {
  const [a, b] = await spawnPeers(t, 2, { connect: true })
  const errors: Error[] = []
  await echo(b, errors)
  const conn = a.getConnections(b.peerId)[0]

  const tooBig = new Uint8Array(2000)
  const err = await sendRaw(a, b, ECHO.id, new Uint8Array([...encodeVarint(tooBig.length), ...tooBig]))
  t.ok(err != null, 'the requester\'s stream was reset')
  await waitFor(() => errors.length === 1, 5000, 'the handler error')
  t.equal((errors[0] as ProtocolError).code, 'IMGSWARM_PROTOCOL')
  t.match(errors[0].message, /2000-byte frame; the limit is 1024/)

  t.equal(conn.status, 'open', 'the connection is still open')
  t.same(a.getConnections(b.peerId).map(c => c.id), [conn.id], 'and it is the same connection')
  const got = await collect(request(a, b.peerId, ECHO, [enc('still here')]))
  t.same(got.map(dec), ['still here'], 'a new exchange works on it')
})

t.test('a malformed length is refused as soon as it is seen', async t => {
  const [a, b] = await spawnPeers(t, 2, { connect: true })
  const errors: Error[] = []
  await echo(b, errors)
  // Continuation bits on every byte: no length ever completes.
  await sendRaw(a, b, ECHO.id, new Uint8Array([0xff, 0xff, 0xff, 0xff]))
  // A redundant zero byte: non-minimal encodings are refused.
  await sendRaw(a, b, ECHO.id, new Uint8Array([0x81, 0x00, 0x01]))
  await waitFor(() => errors.length === 2, 5000, 'two handler errors')
  t.ok(errors.every(e => e instanceof ProtocolError), errors.map(e => e.message).join('; '))
  t.same(await collect(request(a, b.peerId, ECHO, [enc('ok')])).then(f => f.map(dec)), ['ok'])
})

t.test('an oversized answer fails the requester\'s read with a ProtocolError, not the connection', async t => {
  const [a, b] = await spawnPeers(t, 2, { connect: true })
  await handle(b, { ...ECHO, maxResponseFrameBytes: 1 << 20 }, async (frames, send) => {
    await onlyFrame(frames, ECHO)
    await send(new Uint8Array(5000))
  })
  await t.rejects(collect(request(a, b.peerId, ECHO, [enc('x')])), { code: 'IMGSWARM_PROTOCOL' })
  t.equal(a.getConnections(b.peerId)[0]?.status, 'open')
})

t.test('the requester speaks first; the responder answers one request with many frames', async t => {
  const [a, b] = await spawnPeers(t, 2)
  const N = 5000
  await handle(b, ECHO, async (frames, send) => {
    const req = dec(await onlyFrame(frames, ECHO))
    for (let i = 0; i < N; i++) await send(enc(`${req}:${i}`))
  })
  const got = await collect(request(a, b.getMultiaddrs(), ECHO, [enc('q')]))
  t.equal(got.length, N)
  t.equal(dec(got[0]), 'q:0')
  t.equal(dec(got[N - 1]), `q:${N - 1}`)
  t.ok(got.every((f, i) => dec(f) === `q:${i}`), 'all in order')
})

t.test('a responder that speaks first is stopped and the requester sees a reset', async t => {
  const [a, b] = await spawnPeers(t, 2)
  const errors: Error[] = []
  await handle(b, ECHO, async (_frames, send) => {
    await send(enc('unasked'))
  }, { onError: err => { errors.push(err) } })
  await t.rejects(collect(request(a, b.getMultiaddrs(), ECHO, [enc('q')])), PeerStreamError)
  t.equal(errors.length, 1)
  t.match(errors[0].message, /may not send before it has read a request frame/)
})

t.test('a stalled responder times out the read, and the handler is told through its signal', async t => {
  const [a, b] = await spawnPeers(t, 2)
  let handlerAborted = false
  await handle(b, ECHO, async (frames, _send, ctx) => {
    await onlyFrame(frames, ECHO)
    await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => { handlerAborted = true; resolve() }))
  })
  const started = Date.now()
  await t.rejects(collect(request(a, b.getMultiaddrs(), ECHO, [enc('q')], { timeoutMs: 300 })), PeerTimeoutError)
  t.ok(Date.now() - started < 3000, 'within the timeout, not libp2p\'s')
  await waitFor(() => handlerAborted, 5000, 'the handler signal')
  t.pass('the handler saw the reset')
})

t.test('streams past the per-peer limit are reset; others proceed', async t => {
  const [a, b] = await spawnPeers(t, 2, { connect: true })
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  const errors: Error[] = []
  let entered = 0
  await handle(b, ECHO, async (frames, send) => {
    const f = await onlyFrame(frames, ECHO)
    entered++
    await gate
    await send(f)
  }, { maxStreamsPerPeer: 2, onError: err => { errors.push(err) } })
  const first = collect(request(a, b.peerId, ECHO, [enc('1')]))
  const second = collect(request(a, b.peerId, ECHO, [enc('2')]))
  await waitFor(() => entered === 2, 5000, 'two handlers')
  await t.rejects(collect(request(a, b.peerId, ECHO, [enc('3')])), PeerStreamError, 'the third is reset')
  release()
  t.same((await first).map(dec), ['1'])
  t.same((await second).map(dec), ['2'])
  t.same((await collect(request(a, b.peerId, ECHO, [enc('4')]))).map(dec), ['4'], 'a slot is free again')
  t.ok(errors.some(e => /limit is 2/.test(e.message)), 'the refusal is reported to onError')
})

t.test('backpressure: a slow reader holds the sender back instead of buffering everything', async t => {
  const [a, b] = await spawnPeers(t, 2, { connect: true })
  const BIG: FrameProtocol = { id: '/imgswarm-test/big/1.0.0', maxRequestFrameBytes: 64, maxResponseFrameBytes: 1 << 20 }
  const FRAMES = 96
  let sent = 0
  await handle(b, BIG, async (frames, send) => {
    await onlyFrame(frames, BIG)
    const frame = new Uint8Array(1 << 20)
    for (let i = 0; i < FRAMES; i++) {
      frame[0] = i
      await send(frame)
      sent++
    }
  })
  let read = 0
  let maxAhead = 0
  for await (const f of request(a, b.peerId, BIG, [enc('go')])) {
    t.equal(f[0], read & 0xff)
    read++
    maxAhead = Math.max(maxAhead, sent - read)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  t.equal(read, FRAMES)
  // The yamux window (16 MiB), our read-ahead (two frames) and the send buffers bound it; without
  // backpressure the sender would have finished all 96 MiB before the reader took its tenth frame.
  t.ok(maxAhead <= 40, `the sender ran at most ${maxAhead} MiB ahead of the reader`)
})

t.test('leaving the loop early resets the stream; the responder stops', async t => {
  const [a, b] = await spawnPeers(t, 2, { connect: true })
  let stopped: Error | undefined
  await handle(b, ECHO, async (frames, send) => {
    const req = await onlyFrame(frames, ECHO)
    if (dec(req) !== 'endless') return await send(req)
    for (let i = 0; ; i++) await send(enc(String(i)))
  }, { onError: err => { stopped = err } })
  let n = 0
  for await (const _f of request(a, b.peerId, ECHO, [enc('endless')])) {
    if (++n === 10) break
  }
  await waitFor(() => stopped != null, 5000, 'the responder to stop')
  t.type(stopped, PeerStreamError, stopped?.message ?? 'no error')
  t.same((await collect(request(a, b.peerId, ECHO, [enc('ok')]))).map(dec), ['ok'], 'the connection still works')
})

t.test('a connection that dies mid-answer is an error after the frames that arrived, never a clean end', async t => {
  const [a, b] = await spawnPeers(t, 2, { connect: true })
  let calls = 0
  await handle(b, ECHO, async (frames, send, ctx) => {
    await onlyFrame(frames, ECHO)
    for (let i = 0; i < 5; i++) await send(enc(String(i)))
    if (++calls > 1) return
    await new Promise(resolve => setTimeout(resolve, 50))
    b.getConnections(ctx.peer)[0].abort(new Error('pulled the plug'))
  })
  const got: string[] = []
  await t.rejects(async () => { for await (const f of request(a, b.peerId, ECHO, [enc('q')])) got.push(dec(f)) }, PeerStreamError)
  t.same(got, ['0', '1', '2', '3', '4'], 'the frames before the cut were delivered')
  t.same((await collect(request(a, b.peerId, ECHO, [enc('q')]))).length, 5, 'the next request dials a new connection')
})

t.test('cancelling with a signal rejects with the signal\'s reason', async t => {
  const [a, b] = await spawnPeers(t, 2)
  await handle(b, ECHO, async (frames, _send, ctx) => {
    await onlyFrame(frames, ECHO)
    await new Promise(resolve => ctx.signal.addEventListener('abort', resolve))
  })
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 200)
  await t.rejects(collect(request(a, b.getMultiaddrs(), ECHO, [enc('q')], { signal: controller.signal })), { name: 'AbortError' })
})

t.test('a peer without the protocol, and one that is gone, fail with their own errors', async t => {
  const [a, b, c] = await spawnPeers(t, 3)
  await t.rejects(collect(request(a, b.getMultiaddrs(), ECHO, [enc('q')])), ProtocolUnsupportedError)
  const addrs = c.getMultiaddrs()
  await c.stop()
  await t.rejects(collect(request(a, addrs, ECHO, [enc('q')])), PeerUnreachableError)
})
