import { encodeManifest, manifestCid, chunkEntries, type Manifest } from '../../src/chunks/manifest.js'
import type { ChunkReply, PeerSource } from '../../src/fetch/sources.js'
import type { LevelStore } from '../../src/store/level-store.js'

/** What a fake peer was asked: the test's proof of who was consulted. */
export interface PeerCalls { manifests: number, haves: number, chunks: number }

/**
 * An in-memory neighbour over a store, for fast tests of the fetch logic above PeerSource. With
 * `lie`, asked for the manifest of that ref, it answers with the manifest of the image it holds
 * relabelled with the claimed digest, and serves that image's genuine chunks.
 */
export function storePeer (id: string, store: LevelStore, options: { lie?: { claim: string, holds: string } } = {}): { peer: PeerSource, calls: PeerCalls } {
  const calls: PeerCalls = { manifests: 0, haves: 0, chunks: 0 }
  const manifests = new Map<string, Manifest>()
  const manifestOf = async (hex: string): Promise<Manifest | undefined> => {
    const lie = options.lie
    if (lie != null && hex === lie.claim.slice(7)) {
      const genuine = await store.getManifest(await store.resolve(lie.holds))
      return { ...genuine, digest: Buffer.from(hex, 'hex') }
    }
    const rec = await store.getRecord(hex)
    return rec?.state === 'available' ? await store.getManifest(rec) : undefined
  }
  const peer: PeerSource = {
    id,
    async manifest (ref) {
      calls.manifests++
      if (!('hex' in ref)) {
        const m = manifests.get(ref.cid)
        return m != null ? encodeManifest(m) : undefined
      }
      const m = await manifestOf(ref.hex)
      if (m == null) return undefined
      const bytes = encodeManifest(m)
      manifests.set(manifestCid(bytes).toString(), m)
      return bytes
    },
    async have (cid, chunkCount) {
      calls.haves++
      const m = manifests.get(cid)
      if (m == null) return undefined
      const bits = new Uint8Array(Math.ceil(chunkCount / 8))
      const entries = [...chunkEntries(m)]
      const present = await store.hasMany(entries.map(e => e.digest))
      present.forEach((yes, i) => { if (yes) bits[i >> 3] |= 0x80 >> (i & 7) })
      return { bits, fetching: false }
    },
    async * chunks (digests) {
      calls.chunks++
      for (const digest of digests) {
        const reply: ChunkReply = await store.has(digest) ? { digest, bytes: (await store.get(digest)).bytes } : { digest, missing: true }
        yield reply
      }
    }
  }
  return { peer, calls }
}
