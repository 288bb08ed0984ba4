// A store written by the format-1 release (chunks in the catalog, keyed by digest) migrates to format
// 2 (chunks in the chunk log, in write order) on first open or by `imgswarm migrate`, with nothing
// lost: images, bytes, records, pins, leases, manifests. A migration stopped or killed half way
// resumes on the next open.
import { spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import t from 'tap'
import { LocalNode } from '../src/local-node.js'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref } from './helpers/data.js'
import type { T } from './helpers/failure.js'
import { format1ChunksLeft, writeFormat1Store, type Format1Image } from './helpers/format-1-store.js'

const MiB = 1024 * 1024
const DIE = fileURLToPath(new URL('./helpers/migrate-and-die.js', import.meta.url))

function images (big = 3 * MiB): Format1Image[] {
  const a = seededBytes(big, 'migrate-a')
  // b shares a's first half: their common chunks are stored once, and must stay so.
  const b = Buffer.concat([a.subarray(0, big / 2), seededBytes(big / 2 + 777, 'migrate-b')])
  const future = new Date(Date.now() + 3_600_000).toISOString()
  return [
    { bytes: a, name: 'base', pinned: true, leases: [{ holder: 'nova:vm-1' }, { holder: 'nova:vm-2', expires: future }] },
    { bytes: b, name: 'derived', type: 'kernel' },
    { bytes: seededBytes(1000, 'migrate-c'), name: 'tiny', type: 'ramdisk', state: 'failed' }
  ]
}

async function storeFormat (data: string): Promise<string | undefined> {
  const db = new Level<string, string>(join(data, 'db'))
  await db.open()
  try {
    return await db.sublevel<string, string>('meta', { keyEncoding: 'utf8', valueEncoding: 'utf8' }).get('format')
  } finally {
    await db.close()
  }
}

/** Every image of `imgs` is listed with its old record, and the available ones export to their exact bytes. */
async function assertAllThere (t: T, data: string, imgs: Format1Image[], written: Array<{ ref: string, manifest: string, chunks: number }>): Promise<void> {
  const env = { IMGSWARM_DATA: data }
  const ls = await runCli(['ls', '--json'], { env })
  t.equal(ls.code, 0, ls.stderr)
  const listed = JSON.parse(ls.stdout) as Array<{ ref: string, manifest: string, chunks: number, pinned: boolean, state: string, name: string, type: string, hits: number, leasedBy: string[] }>
  t.equal(listed.length, imgs.length, 'every image is listed')
  for (const [i, img] of imgs.entries()) {
    const rec = listed.find(r => r.ref === written[i].ref)
    t.ok(rec, `${img.name} is listed`)
    if (rec == null) continue
    t.same({ manifest: rec.manifest, chunks: rec.chunks, pinned: rec.pinned, state: rec.state, name: rec.name, type: rec.type, hitsKept: rec.hits >= 3 },
      { manifest: written[i].manifest, chunks: written[i].chunks, pinned: img.pinned ?? false, state: img.state ?? 'available', name: img.name, type: img.type ?? 'machine', hitsKept: true },
      `${img.name}: its record, manifest CID and pin are as they were`)
    t.same(rec.leasedBy.sort(), (img.leases ?? []).map(l => l.holder).sort(), `${img.name}: its leases are kept`)
    if ((img.state ?? 'available') !== 'available') continue
    const out = join(data, '..', `out-${i}`)
    const exp = await runCli(['export', rec.ref, '-o', out], { env })
    t.equal(exp.code, 0, exp.stderr)
    t.equal(sha256Ref(await readFile(out)), written[i].ref, `${img.name} exports to its exact bytes`)
  }
  // The image that was `failed` before stays failed (verify exits 1 for it), but no chunk is missing or damaged.
  const verify = await runCli(['verify', '--json'], { env })
  const report = JSON.parse(verify.stdout) as { problems: unknown[], failed: string[] }
  t.same(report.problems, [], `verify finds every chunk intact: ${verify.stderr}`)
  t.same(report.failed, written.filter((_, i) => (imgs[i].state ?? 'available') !== 'available').map(w => w.ref), 'only the image that had failed before is failed')
}

t.test('a format-1 store is migrated on first open, with nothing lost', async t => {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const imgs = images()
  const written = await writeFormat1Store(data, imgs)
  t.equal(await storeFormat(data), '1')
  await assertAllThere(t, data, imgs, written)
  t.equal(await storeFormat(data), '2', 'the store is at format 2')
  t.equal(await format1ChunksLeft(data), 0, 'no chunk is left in the old place')

  const again = await runCli(['migrate'], { env: { IMGSWARM_DATA: data } })
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /^the store is at format 2: nothing to migrate\n$/)
  // Shared chunks stay stored once: gc frees only what the failed image alone names, and the images still read.
  const distinctOf = async (node: LocalNode, which: typeof written): Promise<Set<string>> => {
    const out = new Set<string>()
    for (const w of which) {
      const m = await node.store.getManifest((await node.store.getRecord(w.ref.slice(7)))!)
      for (let i = 0; i < m.chunkDigests.length; i += 32) out.add(Buffer.from(m.chunkDigests.subarray(i, i + 32)).toString('hex'))
    }
    return out
  }
  const good = written.filter((_, i) => (imgs[i].state ?? 'available') !== 'failed')
  const before = await LocalNode.open({ dir: data })
  const all = await distinctOf(before, written)
  const kept = await distinctOf(before, good)
  t.equal((await before.store.chunkStats()).chunks, all.size, 'each distinct chunk is stored once')
  await before.close()
  const gc = await runCli(['gc', '--json'], { env: { IMGSWARM_DATA: data } })
  t.equal(JSON.parse(gc.stdout).freedChunks, all.size - kept.size, 'gc frees only the chunks that the failed image alone names')
  const node = await LocalNode.open({ dir: data })
  t.teardown(async () => { await node.close() })
  t.equal((await node.store.chunkStats()).chunks, kept.size, 'every chunk of every other image stays')
})

t.test('imgswarm migrate reports what it moved', async t => {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const imgs = images()
  const written = await writeFormat1Store(data, imgs)
  const stored = await format1ChunksLeft(data)
  const r = await runCli(['migrate'], { env: { IMGSWARM_DATA: data } })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^migrated the store to format 2: moved \d+ chunks, [\d.]+ MiB\n$/)
  t.equal(Number(/moved (\d+) chunks/.exec(r.stdout)?.[1]), stored, 'every stored chunk moved')
  t.match(r.stderr, /migrating: \d+ chunks/, 'without a terminal, progress goes to stderr as lines')
  await assertAllThere(t, data, imgs, written)
})

t.test('a migration stopped half way resumes on the next open', async t => {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const imgs = images(8 * MiB)
  const written = await writeFormat1Store(data, imgs)
  const total = await format1ChunksLeft(data)
  const controller = new AbortController()
  const seen: number[] = []
  await t.rejects(LocalNode.open({
    dir: data,
    signal: controller.signal,
    onMigrate: p => { seen.push(p.chunks); if (p.chunks >= 64) controller.abort() }
  }))
  const left = await format1ChunksLeft(data)
  t.ok(left > 0 && left < total, `part of the chunks moved (${total - left} of ${total})`)
  t.equal(await storeFormat(data), '1', 'the store says format 1 until every chunk has moved')
  await assertAllThere(t, data, imgs, written)
  t.equal(await format1ChunksLeft(data), 0)
})

t.test('a migration killed (SIGKILL) half way resumes, and gc removes what the kill left behind', async t => {
  const dir = await tempDir(t)
  const data = join(dir, 'data')
  const imgs = images(8 * MiB)
  const written = await writeFormat1Store(data, imgs)
  const total = await format1ChunksLeft(data)
  const r = spawnSync(process.execPath, [DIE, data, '64'], { encoding: 'utf8' })
  t.equal(r.signal, 'SIGKILL', `the migration was killed: ${r.stderr}`)
  const left = await format1ChunksLeft(data)
  t.ok(left > 0 && left < total, `it was killed half way (${total - left} of ${total} moved)`)
  await assertAllThere(t, data, imgs, written)
  const gc = await runCli(['gc'], { env: { IMGSWARM_DATA: data } })
  t.equal(gc.code, 0, gc.stderr)
  const verify = JSON.parse((await runCli(['verify', '--json'], { env: { IMGSWARM_DATA: data } })).stdout) as { problems: Array<{ image: string }> }
  const failed = new Set(written.filter((_, i) => imgs[i].state === 'failed').map(w => w.ref))
  t.same(verify.problems.filter(p => !failed.has(p.image)), [], 'after gc every chunk of every image that had not failed is still there')
})
