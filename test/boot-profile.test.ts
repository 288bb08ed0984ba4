import { pathToFileURL } from 'node:url'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import {
  checkBootProfile, decodeBootProfile, encodeBootProfile, MAX_PROFILE_BYTES, MAX_PROFILE_CHUNKS, MAX_PROFILE_ENCODED, profileEntries
} from '../src/chunks/boot-profile.js'
import { chunkCount, type Manifest } from '../src/chunks/manifest.js'
import { LocalNode } from '../src/local-node.js'
import { fileOrigin } from '../src/origin/file-origin.js'
import { publishImage } from '../src/publish.js'
import { BootRecorder } from '../src/serve/boot-recorder.js'
import { decodeProfileAnswer, decodeProfileRequest } from '../src/peer/boot-profile-protocol.js'
import { tempDir } from './helpers/cli.js'
import { fuzzParams, mutate, mutations, ownErrorOr } from './helpers/fuzz.js'
import { seededBytes, streamOf } from './helpers/data.js'

const MiB = 1024 * 1024

async function withImage (t: { teardown: (fn: () => Promise<void> | void) => void }, size: number, seed: string, dir?: string): Promise<{ node: LocalNode, hex: string, manifest: Manifest, cid: string, offsets: number[] }> {
  const node = await LocalNode.open({ dir: dir ?? await tempDir(t) })
  t.teardown(async () => { await node.close().catch(() => {}) })
  const { record } = await node.importStream(streamOf(seededBytes(size, seed)), { meta: { type: 'machine', name: seed } })
  const manifest = await node.store.getManifest(record)
  const lengths = new DataView(manifest.chunkLengths.buffer, manifest.chunkLengths.byteOffset, manifest.chunkLengths.byteLength)
  const offsets = [0]
  for (let i = 0; i < chunkCount(manifest); i++) offsets.push(offsets[i] + lengths.getUint32(i * 4))
  return { node, hex: record.ref.slice(7), manifest, cid: record.manifest, offsets }
}

t.test('a recorded profile round-trips through the store, in read order, and survives a reopen', async t => {
  const dir = await tempDir(t)
  const img = await withImage(t, 8 * MiB, 'profile-a', dir)
  const { hex, manifest, cid, offsets } = img
  let node = img.node
  const n = chunkCount(manifest)
  t.ok(n > 20, `${n} chunks`)
  const recorder = new BootRecorder({ profiles: node.store.bootProfiles, windowMs: 60_000 })
  // Reads out of order, some twice, one spanning two chunks: each chunk once, in first-read order.
  const reads: Array<[number, number]> = [[offsets[n - 3], 4096], [offsets[2] + 10, 100], [offsets[n - 3] + 1, 10], [offsets[7] - 5, 10], [0, 512]]
  for (const [off, len] of reads) recorder.noteRead(hex, manifest, cid, off, len)
  await recorder.flush()
  const p = await node.store.bootProfiles.load(hex, manifest)
  t.ok(p != null, 'kept in the store')
  t.same(p?.chunks, [n - 3, 2, 6, 7, 0], 'the chunks in first-read order')
  t.equal(p?.manifest, cid, 'under the manifest it was recorded with')
  const info = await node.inspect(hex)
  t.same(info.profile != null ? { chunks: info.profile.chunks, bytes: info.profile.bytes } : undefined, { chunks: 5, bytes: p!.bytes }, 'inspect shows it and its size')
  t.ok((info.profile?.encodedBytes ?? 0) < 300, `a small object (${info.profile?.encodedBytes} bytes)`)
  const shown = await node.bootProfile(hex)
  t.same(shown.order, [n - 3, 2, 6, 7, 0], 'profile show lists the order')

  // A second recording does not replace the first in the same run.
  const again = new BootRecorder({ profiles: node.store.bootProfiles, windowMs: 60_000 })
  again.noteRead(hex, manifest, cid, offsets[10], 10)
  await again.flush()
  t.same((await node.store.bootProfiles.load(hex, manifest))?.chunks, [n - 3, 2, 6, 7, 0], 'an image with a profile is not recorded over')

  await node.close()
  node = await LocalNode.open({ dir })
  t.teardown(async () => { await node.close().catch(() => {}) })
  t.same((await node.store.bootProfiles.load(hex, manifest))?.chunks, [n - 3, 2, 6, 7, 0], 'still there after a reopen')

  t.same(await node.removeBootProfile(hex), { ref: `sha256:${hex}`, removed: true }, 'profile rm')
  t.same(await node.removeBootProfile(hex), { ref: `sha256:${hex}`, removed: false }, 'twice: nothing to drop')
  await t.rejects(node.bootProfile(hex), { name: 'ImageNotFoundError' }, 'show of none is not found')
  t.equal((await node.inspect(hex)).profile, undefined, 'inspect shows none')

  // A profile goes with its image.
  await node.store.bootProfiles.put(hex, encodeBootProfile(profileEntries(manifest, cid, [1, 2])))
  await node.remove(hex, { force: true })
  t.equal(await node.store.bootProfiles.raw(hex), undefined, 'rm of the image drops its profile')
})

t.test('a recording is bounded in chunks and bytes and stops at its window', async t => {
  const { node, hex, manifest, cid, offsets } = await withImage(t, 96 * MiB, 'profile-big')
  const n = chunkCount(manifest)
  const recorder = new BootRecorder({ profiles: node.store.bootProfiles, windowMs: 60_000 })
  recorder.noteRead(hex, manifest, cid, 0, manifest.size) // one read of everything
  await recorder.flush()
  const p = await node.store.bootProfiles.load(hex, manifest)
  t.ok(p != null)
  t.ok(p!.chunks.length <= MAX_PROFILE_CHUNKS && p!.chunks.length < n, `${p!.chunks.length} of ${n} chunks`)
  t.ok(p!.bytes <= MAX_PROFILE_BYTES, `${p!.bytes} bytes, at most ${MAX_PROFILE_BYTES}`)
  t.ok(p!.encodedBytes <= MAX_PROFILE_ENCODED)
  t.same(p!.chunks.slice(0, 3), [0, 1, 2], 'in order')

  // Reads after the window are not recorded.
  const { node: other, hex: h2, manifest: m2, cid: c2, offsets: o2 } = await withImage(t, 4 * MiB, 'profile-window')
  const short = new BootRecorder({ profiles: other.store.bootProfiles, windowMs: 200 })
  short.noteRead(h2, m2, c2, o2[3], 1)
  await new Promise(resolve => setTimeout(resolve, 400))
  short.noteRead(h2, m2, c2, o2[5], 1)
  await short.flush()
  t.same((await other.store.bootProfiles.load(h2, m2))?.chunks, [3], 'only the reads within the window')
  const off = new BootRecorder({ profiles: other.store.bootProfiles, windowMs: 0 })
  await other.removeBootProfile(h2)
  off.noteRead(h2, m2, c2, 0, 10)
  await off.flush()
  t.equal(await other.store.bootProfiles.raw(h2), undefined, 'a window of 0 records nothing')
  t.ok(offsets.length > 0)
})

t.test('a profile is checked against the manifest: foreign and malformed entries are ignored', async t => {
  const { node, hex, manifest, cid } = await withImage(t, 4 * MiB, 'profile-check')
  const { manifest: otherManifest, cid: otherCid } = await withImage(t, 4 * MiB, 'profile-other')
  const n = chunkCount(manifest)
  const mine = profileEntries(manifest, cid, [4, 1])
  const foreign = profileEntries(otherManifest, otherCid, [0, 1, 2])
  // A forged entry: an index of this manifest with another image's digest; one past the end; one by digest only.
  const mixed = {
    manifest: cid,
    recorded: mine.recorded,
    entries: [foreign.entries[0], mine.entries[0], { index: n + 5, digest: foreign.entries[1].digest }, { index: 2, digest: foreign.entries[2].digest }, { index: 999_999, digest: mine.entries[1].digest }, mine.entries[0]]
  }
  const bytes = encodeBootProfile(mixed)
  const decoded = decodeBootProfile(bytes)
  t.equal(decoded?.entries.length, 6, 'decodes as recorded')
  const checked = checkBootProfile(decoded!, manifest, bytes.length)
  t.same(checked.chunks, [4, 1], 'only this manifest\'s chunks (one found by its digest at another index), each once')
  t.ok(await node.store.bootProfiles.put(hex, bytes))
  t.same((await node.store.bootProfiles.load(hex, manifest))?.chunks, [4, 1], 'the store checks it on load')
  t.ok(await node.store.bootProfiles.put(hex, encodeBootProfile(foreign)))
  t.equal(await node.store.bootProfiles.load(hex, manifest), undefined, 'a profile of another image is none at all')

  t.equal(decodeBootProfile(Buffer.from('not a profile')), undefined, 'garbage decodes to nothing')
  t.equal(decodeBootProfile(bytes.subarray(0, bytes.length - 1)), undefined, 'nor does a truncated profile')
  const big = Buffer.alloc(MAX_PROFILE_ENCODED + 1)
  Buffer.from(bytes).copy(big)
  t.equal(decodeBootProfile(big), undefined, 'nor one over the bound')
  t.equal(await node.store.bootProfiles.put(hex, big), false, 'the store refuses it')
  const tooMany = encodeBootProfile({ ...mine, entries: Array.from({ length: MAX_PROFILE_CHUNKS + 10 }, (_, i) => ({ index: i % n, digest: manifest.chunkDigests.subarray((i % n) * 32, (i % n) * 32 + 32) })) })
  t.ok(tooMany.length <= MAX_PROFILE_ENCODED, 'encoding keeps the bound')
})

t.test('publish writes the profile beside the manifest; a file origin reads it back', async t => {
  const { node, hex, manifest, cid } = await withImage(t, 2 * MiB, 'profile-publish')
  const origin = fileOrigin(pathToFileURL(join(await tempDir(t), 'origin')).href)
  const record = await node.store.resolve(hex)
  const first = await publishImage(node.store, record, origin)
  t.equal(first.profileBytes, undefined, 'no profile: none written')
  t.equal(await origin.readProfile!(hex), undefined)
  const bytes = encodeBootProfile(profileEntries(manifest, cid, [3, 0, 1]))
  await node.store.bootProfiles.put(hex, bytes)
  const second = await publishImage(node.store, record, origin)
  t.equal(second.profileBytes, bytes.length)
  t.same(Buffer.from((await origin.readProfile!(hex))!), Buffer.from(bytes), 'sha256/<hex>.profile holds it')
})

t.test('fuzz: mutated profiles and wire frames never throw a foreign error, and a checked profile names only the manifest\'s chunks', async t => {
  const { manifest, cid } = await withImage(t, 2 * MiB, 'profile-fuzz')
  const n = chunkCount(manifest)
  const valid = encodeBootProfile(profileEntries(manifest, cid, [5, 0, 3, n - 1, 2]))
  await fc.assert(fc.property(mutations, ops => {
    const bytes = mutate(valid, ops)
    const decoded = decodeBootProfile(bytes)
    if (decoded == null) return true
    const p = checkBootProfile(decoded, manifest, bytes.length)
    const seen = new Set(p.chunks)
    return seen.size === p.chunks.length && p.chunks.every(i => Number.isInteger(i) && i >= 0 && i < n) && p.chunks.length <= MAX_PROFILE_CHUNKS
  }), fuzzParams(2000))
  await fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), frame => {
    const hex = ownErrorOr('decodeProfileRequest', () => decodeProfileRequest(frame))
    const answer = decodeProfileAnswer(frame)
    return (hex == null || /^[0-9a-f]{64}$/.test(hex)) && (answer == null || answer.length === frame.length - 1)
  }), fuzzParams(2000))
  t.pass('held')
})
