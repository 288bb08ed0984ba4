import { encodeManifest, manifestCid, type Manifest } from '../../src/chunks/manifest.js'
import { LocalNode } from '../../src/local-node.js'
import { loadOrCreateIdentity } from '../../src/peer/identity.js'
import { createPeerNode } from '../../src/peer/libp2p-node.js'
import { servePeers } from '../../src/peer/peer-service.js'
import type { ImageRecord } from '../../src/store/image-record.js'
import type { LevelStore } from '../../src/store/level-store.js'
import { tempDir } from './cli.js'
import { streamOf } from './data.js'

interface Teardown { teardown: (fn: () => Promise<void> | void) => void }

/**
 * A dishonest peer: a real libp2p node speaking the real protocols over TCP, whose store lies. Honest
 * code verifies before it serves, so these faults cannot be produced otherwise.
 * - `corrupt`: every chunk it sends has one byte flipped.
 * - `lie`: asked for the manifest of `claim`, it sends the manifest of the image it holds, relabelled
 *   with `claim`'s digest, and serves that image's (genuine) chunks.
 */
export async function startEvilPeer (t: Teardown, holds: Uint8Array, mode: { corrupt: true } | { lie: string }): Promise<{ addr: string }> {
  const dir = await tempDir(t)
  const local = await LocalNode.open({ dir })
  t.teardown(async () => { await local.close() })
  const { record } = await local.importStream(streamOf(holds))
  const store = local.store
  let lie: { record: ImageRecord, manifest: Manifest } | undefined
  if ('lie' in mode) {
    const genuine = await store.getManifest(record)
    const manifest = { ...genuine, digest: Buffer.from(mode.lie.slice(7), 'hex') }
    const cid = manifestCid(encodeManifest(manifest)).toString()
    lie = { record: { ...record, ref: mode.lie, manifest: cid }, manifest }
  }
  const lying = new Proxy(store, {
    get (target, prop) {
      if (prop === 'getMany' && 'corrupt' in mode) {
        return async (digests: Uint8Array[]) => (await target.getMany(digests)).map(c => {
          const bytes = Uint8Array.from(c.bytes)
          bytes[bytes.length >> 1] ^= 0x01
          return { ...c, bytes }
        })
      }
      if (prop === 'resolve' && lie != null) {
        return async (ref: string) => ref === lie.record.ref || ref === lie.record.manifest ? lie.record : await target.resolve(ref)
      }
      if (prop === 'getManifest' && lie != null) {
        return async (r: ImageRecord) => r === lie.record ? lie.manifest : await target.getManifest(r)
      }
      const v = Reflect.get(target, prop)
      return typeof v === 'function' ? v.bind(target) : v
    }
  }) as LevelStore
  const { privateKey } = await loadOrCreateIdentity(dir)
  const node = await createPeerNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
  t.teardown(async () => { await node.stop() })
  await servePeers(node, lying)
  return { addr: node.getMultiaddrs()[0].toString() }
}
