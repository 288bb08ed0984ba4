import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import t from 'tap'
import { chunkOf } from '../src/chunks/cid.js'
import { DEFAULT_CHUNKER } from '../src/chunks/fastcdc.js'
import { ImageProtectedError, StoreVersionError } from '../src/errors.js'
import { LocalNode } from '../src/local-node.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref } from './helpers/data.js'

async function * pieces (bytes: Uint8Array, size = 1 << 20): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < bytes.length; off += size) yield bytes.subarray(off, off + size)
}

async function openNode (t: { teardown: (fn: () => Promise<void> | void) => void }, dir?: string): Promise<LocalNode> {
  const node = await LocalNode.open({ dir: dir ?? await tempDir(t) })
  t.teardown(async () => { await node.close().catch(() => {}) })
  return node
}


t.test('round trips of edge sizes give back the exact bytes and digest', async t => {
  const node = await openNode(t)
  const dir = await tempDir(t)
  const { min, max } = DEFAULT_CHUNKER
  for (const size of [0, 1, min - 1, min, max, max + 1, 3 * max + 12345]) {
    const bytes = seededBytes(size, `size-${size}`)
    const { record } = await node.importStream(pieces(bytes), { meta: { type: 'other', name: `s${size}` } })
    t.equal(record.ref, sha256Ref(bytes), `size ${size}: ref is the sha256`)
    t.equal(record.state, 'available')
    const out = join(dir, `out-${size}`)
    await node.export(record.ref, out)
    t.ok((await readFile(out)).equals(bytes), `size ${size}: bytes identical`)
  }
})

t.test('images sharing 90% of their content store the shared chunks once', async t => {
  const node = await openNode(t)
  const base = seededBytes(20 * 1024 * 1024, 'base')
  const variant = Buffer.concat([base.subarray(0, 18 * 1024 * 1024), seededBytes(2 * 1024 * 1024, 'tail')])
  const a = await node.importStream(pieces(base))
  const b = await node.importStream(pieces(variant))
  const stats = await node.store.chunkStats()
  t.ok(stats.bytes < 23 * 1024 * 1024, `store holds ${stats.bytes} bytes for 40 MiB of images`)
  t.ok(b.newBytes < 3 * 1024 * 1024, `second import wrote only ${b.newBytes} new bytes`)
  const ib = await node.inspect(b.record.ref)
  t.equal(ib.sharedBytes + ib.uniqueBytes, ib.size, 'shared + unique = size')
  t.ok(ib.sharedBytes > 17 * 1024 * 1024 && ib.sharedBytes <= 18 * 1024 * 1024, `sharedBytes ${ib.sharedBytes} is about 18 MiB`)
  t.equal((await node.inspect(a.record.ref)).sharedBytes, ib.sharedBytes, 'sharing is symmetric')
})

t.test('gc keeps the chunks of kept images and frees the rest', async t => {
  const node = await openNode(t)
  const dir = await tempDir(t)
  const keep = seededBytes(5 * 1024 * 1024, 'keep')
  const drop = Buffer.concat([keep.subarray(0, 2 * 1024 * 1024), seededBytes(4 * 1024 * 1024, 'drop')])
  const k = await node.importStream(pieces(keep))
  const d = await node.importStream(pieces(drop))
  // Chunks of an import that never finished (as after a crash): stored, named by no manifest.
  await node.store.putMany([chunkOf(seededBytes(100000, 'orphan'))])
  const before = await node.store.chunkStats()
  const { record, freed } = await node.remove(d.record.ref)
  t.equal(record.ref, d.record.ref)
  const after = await node.store.chunkStats()
  t.equal(before.bytes - after.bytes, freed.bytes, 'freed bytes are reported exactly')
  t.ok(freed.bytes > 4 * 1024 * 1024 - 300000 && freed.bytes < 4 * 1024 * 1024 + 400000, `freed ${freed.bytes}: the unique part and the orphan`)
  t.equal((await node.gc()).chunks, 0, 'a second gc finds nothing')
  await node.export(k.record.ref, join(dir, 'keep'))
  t.ok((await readFile(join(dir, 'keep'))).equals(keep), 'the kept image is intact')
  t.same((await node.list()).map(r => r.ref), [k.record.ref])
})

t.test('gc running during an import does not sweep the import\'s chunks', async t => {
  const node = await openNode(t)
  const bytes = seededBytes(12 * 1024 * 1024, 'concurrent')
  let release!: () => void
  const halfway = new Promise<void>(resolve => { release = resolve })
  let reached!: () => void
  const atHalf = new Promise<void>(resolve => { reached = resolve })
  async function * slow (): AsyncGenerator<Uint8Array> {
    for (let off = 0; off < bytes.length; off += 1 << 20) {
      if (off === 6 << 20) { reached(); await halfway }
      yield bytes.subarray(off, off + (1 << 20))
    }
  }
  const importing = node.importStream(slow())
  await atHalf
  const gc = node.gc()
  release()
  const [{ record }, freed] = await Promise.all([importing, gc])
  t.equal(freed.chunks, 0, 'gc waited and found nothing to free')
  t.same((await node.verify(record.ref)).problems, [], 'every chunk of the image is there')
})

t.test('pins protect from rm; --force overrides', async t => {
  const node = await openNode(t)
  const { record } = await node.importStream(pieces(seededBytes(1000, 'pin')))
  t.equal((await node.pin(record.ref)).pinned, true)
  await t.rejects(node.remove(record.ref), ImageProtectedError)
  t.equal((await node.list()).length, 1)
  await node.remove(record.ref, { force: true })
  t.equal((await node.list()).length, 0)
})

t.test('refs resolve by prefix and by manifest CID', async t => {
  const node = await openNode(t)
  const { record } = await node.importStream(pieces(seededBytes(5000, 'refs')))
  const hex = record.ref.slice(7)
  t.equal((await node.inspect(hex.slice(0, 12))).ref, record.ref)
  t.equal((await node.inspect(record.manifest)).ref, record.ref)
  await t.rejects(node.inspect('0'.repeat(64)), { code: 'IMGSWARM_IMAGE_NOT_FOUND' })
})

t.test('export of zero runs leaves holes (sparse output)', async t => {
  const node = await openNode(t)
  const dir = await tempDir(t)
  const bytes = Buffer.concat([seededBytes(1 << 20, 'head'), Buffer.alloc(32 << 20), seededBytes(1 << 20, 'tail')])
  const { record } = await node.importStream(pieces(bytes))
  const out = join(dir, 'disk.raw')
  await node.export(record.ref, out)
  const st = await stat(out)
  t.equal(st.size, bytes.length)
  t.ok(st.blocks * 512 < 8 << 20, `${st.blocks * 512} bytes allocated for a ${bytes.length}-byte file`)
  t.equal(createHash('sha256').update(await readFile(out)).digest('hex'), record.ref.slice(7))
})

t.test('a store of another format version is refused, not touched', async t => {
  const dir = await tempDir(t)
  const node = await LocalNode.open({ dir })
  await node.importStream(pieces(seededBytes(1000, 'v')))
  await node.close()
  const raw = new Level(join(dir, 'db'))
  await raw.sublevel('meta').put('format', '99')
  await raw.close()
  await t.rejects(LocalNode.open({ dir }), StoreVersionError)
  await t.rejects(LocalNode.open({ dir }), /format version 99; this imgswarm reads versions 1 \(migrated on open\) and 2/)
})

t.test('gc reads the chunk log for unnamed bytes only after a session that may have left some', async t => {
  const dir = await tempDir(t)
  let node = await openNode(t, dir)
  await node.importStream(pieces(seededBytes(3 * 1024 * 1024, 'kept')))
  t.equal(node.store.chunkLog.needsSweep(), false, 'indexed writes leave nothing to sweep')
  // Log bytes whose index entries are never written: what a process killed in between leaves.
  const unnamed = chunkOf(seededBytes(200000, 'unnamed'))
  const { ops } = await node.store.chunkLog.append([unnamed])
  t.equal(ops.length, 1, 'the bytes are in the log')
  await node.close()

  node = await openNode(t, dir)
  t.equal(node.store.chunkLog.needsSweep(), true, 'the next session knows the last one left bytes unindexed')
  const swept = await node.gc()
  t.same({ chunks: swept.chunks, bytes: swept.bytes }, { chunks: 1, bytes: 200000 }, 'gc swept exactly the unnamed bytes')
  t.equal(node.store.chunkLog.needsSweep(), false, 'after the sweep, nothing to sweep')
  await node.importStream(pieces(seededBytes(1024 * 1024, 'more')))
  await node.close()

  node = await openNode(t, dir)
  t.equal(node.store.chunkLog.needsSweep(), false, 'a session that ended cleanly leaves nothing to sweep')
  t.same((await node.gc()).chunks, 0, 'and gc finds nothing')
  t.equal((await node.list()).length, 2, 'both images are still there')
})
