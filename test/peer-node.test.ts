import '../src/util/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generateKey } from '@libp2p/pnet'
import t, { type Test } from 'tap'
import { PeerConfigError } from '../src/errors.js'
import { handle, request, type FrameProtocol } from '../src/peer/exchange.js'
import { createPeerNode } from '../src/peer/libp2p-node.js'
import { spawnPeers, waitFor } from './helpers/peers.js'

const ECHO: FrameProtocol = { id: '/imgswarm-test/echo/1.0.0', maxRequestFrameBytes: 1024, maxResponseFrameBytes: 1024 }

function swarmKey (): Uint8Array {
  const key = new Uint8Array(95)
  generateKey(key)
  return key
}

/** Time a dial that must fail; `ms` bounds the wait so a refusal never hangs the test. */
async function refusedWithin (t: Test, dial: (signal: AbortSignal) => Promise<unknown>, ms: number, what: string): Promise<void> {
  const started = Date.now()
  await t.rejects(dial(AbortSignal.timeout(ms)), what)
  t.ok(Date.now() - started < ms + 2000, `${what}: gave up after ${Date.now() - started} ms`)
}

t.test('nodes on 127.0.0.1 connect and ping each other', async t => {
  const [a, b] = await spawnPeers(t, 2)
  t.match(b.getMultiaddrs()[0].toString(), /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//, 'listens on loopback with its peer id')
  await a.dial(b.getMultiaddrs())
  const rtt = await a.services.ping.ping(b.peerId)
  t.ok(rtt >= 0, `ping ${rtt} ms`)
  // Several pings at once: libp2p's default of one outbound ping stream would refuse the second.
  const rtts = await Promise.all([1, 2, 3].map(async () => await a.services.ping.ping(b.peerId)))
  t.equal(rtts.length, 3, 'concurrent pings work')
  await waitFor(() => b.getConnections(a.peerId).length === 1, 5000, 'b to see the connection')
  t.same(a.getConnections(b.peerId)[0].remoteAddr.toString().split('/').slice(0, 3), ['', 'ip4', '127.0.0.1'])
})

t.test('bootstrap peers are dialled at start', async t => {
  const [a] = await spawnPeers(t, 1)
  const [b] = await spawnPeers(t, 1, { bootstrap: a.getMultiaddrs().map(String) })
  await waitFor(() => b.getConnections(a.peerId).length > 0, 5000, 'the bootstrap connection')
  t.pass('connected to the bootstrap peer')
})

t.test('pnet: nodes with the same swarm key connect; a wrong or missing key is refused within a bounded wait', async t => {
  const key = swarmKey()
  const [a, b] = await spawnPeers(t, 2, { swarmKey: key })
  const [wrong] = await spawnPeers(t, 1, { swarmKey: swarmKey() })
  const [none] = await spawnPeers(t, 1)
  await handle(a, ECHO, async (frames, send) => { for await (const f of frames) await send(f) })

  const got: Uint8Array[] = []
  for await (const f of request(b, a.getMultiaddrs(), ECHO, [Uint8Array.of(7)])) got.push(f)
  t.same(got.map(f => [...f]), [[7]], 'same key: frames flow')

  await refusedWithin(t, async signal => await wrong.dial(a.getMultiaddrs(), { signal }), 4000, 'wrong key')
  await refusedWithin(t, async signal => await none.dial(a.getMultiaddrs(), { signal }), 4000, 'no key')
  await refusedWithin(t, async signal => await a.dial(wrong.getMultiaddrs(), { signal }), 4000, 'dialling out to a wrong key')
  t.equal(a.getConnections(wrong.peerId).length, 0)
  t.equal(a.getConnections(none.peerId).length, 0)
})

t.test('pnet carries bulk data: 128 MiB on one stream (xsalsa20\'s WASM memory used to give out after ~63 MiB)', async t => {
  const [a, b] = await spawnPeers(t, 2, { swarmKey: swarmKey() })
  const BULK: FrameProtocol = { id: '/imgswarm-test/bulk/1.0.0', maxRequestFrameBytes: 16, maxResponseFrameBytes: 1 << 20 }
  await handle(a, BULK, async (frames, send) => {
    for await (const _ of frames) ;
    const frame = new Uint8Array(1 << 20).fill(7)
    for (let i = 0; i < 128; i++) await send(frame)
  })
  let bytes = 0
  for await (const f of request(b, a.getMultiaddrs(), BULK, [Uint8Array.of(1)])) bytes += f.length
  t.equal(bytes, 128 << 20)
})

t.test('allow-list: a listed peer connects; a stranger is refused both ways', async t => {
  const keys = await Promise.all([1, 2, 3].map(async () => await generateKeyPair('Ed25519')))
  const [aKey, bKey, strangerKey] = keys
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  const aId = peerIdFromPrivateKey(aKey).toString()
  const bId = peerIdFromPrivateKey(bKey).toString()
  const [a] = await spawnPeers(t, 1, { privateKey: aKey, allowPeers: [bId] })
  const [b] = await spawnPeers(t, 1, { privateKey: bKey, allowPeers: [aId] })
  const [stranger] = await spawnPeers(t, 1, { privateKey: strangerKey })

  await handle(a, ECHO, async (frames, send) => { for await (const f of frames) await send(f) })

  const got: Uint8Array[] = []
  for await (const f of request(b, a.getMultiaddrs(), ECHO, [Uint8Array.of(1)])) got.push(f)
  t.same(got.map(f => [...f]), [[1]], 'the listed peer connects and is answered')
  await waitFor(() => a.getConnections(b.peerId).length === 1, 5000, 'a to see b')

  // The stranger finishes its half of the handshake before a's gater learns who it is, so its own
  // dial may briefly succeed; a then closes the connection, and nothing can be asked over it.
  await t.rejects(request(stranger, a.getMultiaddrs(), ECHO, [Uint8Array.of(2)]).next(), { code: 'IMGSWARM_PEER_UNREACHABLE' }, 'a stranger dialling in gets no answer')
  await refusedWithin(t, async signal => await a.dial(stranger.getMultiaddrs(), { signal }), 4000, 'dialling out to a stranger')
  await waitFor(() => a.getConnections(stranger.peerId).length === 0 && stranger.getConnections(a.peerId).length === 0, 5000, 'no connection either way')
  t.pass('no connection either way')
})

t.test('settings that cannot work fail with PeerConfigError', async t => {
  const privateKey = await generateKeyPair('Ed25519')
  const listen = ['/ip4/127.0.0.1/tcp/0']
  await t.rejects(createPeerNode({ privateKey, listen: ['not a multiaddr'] }), PeerConfigError)
  await t.rejects(createPeerNode({ privateKey, listen, bootstrap: ['/ip4/127.0.0.1/tcp/4001'] }), PeerConfigError, 'bootstrap without /p2p')
  await t.rejects(createPeerNode({ privateKey, listen, allowPeers: ['not-a-peer-id'] }), PeerConfigError)
  await t.rejects(createPeerNode({ privateKey, listen, swarmKey: new TextEncoder().encode('garbage') }), PeerConfigError)
  await t.rejects(createPeerNode({ privateKey, listen, yamux: { initialWindow: 1024 } }), PeerConfigError)
})
