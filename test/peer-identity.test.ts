import '../src/util/polyfills.js'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { PeerIdentityError } from '../src/errors.js'
import { PEER_KEY_FILE, loadOrCreateIdentity } from '../src/peer/identity.js'
import { createPeerNode } from '../src/peer/libp2p-node.js'
import { tempDir } from './helpers/cli.js'
import { stopAll } from './helpers/peers.js'

t.test('the key is created once, mode 0600, and gives the same PeerId after a restart', async t => {
  const dir = join(await tempDir(t), 'data')
  const first = await loadOrCreateIdentity(dir)
  t.equal(first.created, true)
  t.equal(first.privateKey.type, 'Ed25519')
  t.equal(first.path, join(dir, PEER_KEY_FILE))
  t.equal((await stat(first.path)).mode & 0o777, 0o600, 'only the owner can read it')

  const node1 = await createPeerNode({ privateKey: first.privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
  const id1 = node1.peerId.toString()
  await stopAll([node1])

  const second = await loadOrCreateIdentity(dir)
  t.equal(second.created, false)
  const node2 = await createPeerNode({ privateKey: second.privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
  t.teardown(async () => { await stopAll([node2]) })
  t.equal(node2.peerId.toString(), id1, 'same PeerId across restarts')
  t.equal(second.peerId.toString(), id1)
})

t.test('concurrent creators of the key end up with the same one', async t => {
  const dir = await tempDir(t)
  const ids = await Promise.all([1, 2, 3, 4].map(async () => (await loadOrCreateIdentity(dir)).peerId.toString()))
  t.equal(new Set(ids).size, 1)
})

t.test('a key file readable by others is tightened to 0600', async t => {
  const dir = await tempDir(t)
  const { path, peerId } = await loadOrCreateIdentity(dir)
  await chmod(path, 0o644)
  const again = await loadOrCreateIdentity(dir)
  t.equal(again.peerId.toString(), peerId.toString())
  t.equal((await stat(path)).mode & 0o777, 0o600)
})

t.test('a damaged or foreign key file is refused, not replaced', async t => {
  const dir = await tempDir(t)
  const path = join(dir, PEER_KEY_FILE)
  await writeFile(path, 'not a key', { mode: 0o600 })
  await t.rejects(loadOrCreateIdentity(dir), PeerIdentityError)
  t.equal(await readFile(path, 'utf8'), 'not a key', 'the file is left for the operator')

  await writeFile(path, privateKeyToProtobuf(await generateKeyPair('secp256k1')), { mode: 0o600 })
  await t.rejects(loadOrCreateIdentity(dir), { code: 'IMGSWARM_PEER_IDENTITY', message: /secp256k1/ })
})

t.test('a key path that cannot be written is reported', async t => {
  const dir = await tempDir(t)
  const blocker = join(dir, 'file')
  await writeFile(blocker, '')
  await t.rejects(loadOrCreateIdentity(join(blocker, 'data')), PeerIdentityError)
})
