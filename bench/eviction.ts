/**
 * `npm run bench:eviction`: what the size cap's accounting costs as the store grows. Records BENCH_IMAGES
 * (default 200) images of BENCH_IMAGE_MIB (default 256) MiB of 64 KiB chunks each — manifests and
 * records only, no chunk bytes, since the accounting never reads a chunk — in a LevelDB, where
 * consecutive images share half their chunks (image versions). Then, in the same process:
 *
 *   baseline   list the records and decode every manifest (what any pass over the images costs);
 *   survey     `df` near the cap: the same reads plus the distinct-chunk table (ChunkRefs);
 *   fast path  `enforce` far below the cap: records only;
 *   admissions 20 fetches admitted one after another near the cap (a preheat), where only the first
 *              surveys and the others reuse and update its table.
 *
 * Prints time and the heap the table adds, per GiB of images.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_CHUNKER } from '../src/chunks/fastcdc.js'
import { ChunkRefs } from '../src/cache/chunk-refs.js'
import { ManifestBuilder } from '../src/chunks/manifest.js'
import { LocalNode } from '../src/local-node.js'
import { MiB, machine, mdTable } from './util.js'

const IMAGES = Number(process.env.BENCH_IMAGES ?? 200)
const IMAGE_MIB = Number(process.env.BENCH_IMAGE_MIB ?? 256)
const CHUNK = 64 * 1024

function digestOf (text: string): Uint8Array {
  return createHash('sha256').update(text).digest()
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'imgswarm-bench-evict-'))
  // A cap the distinct bytes stay under and the sum of image sizes does not: admissions take the slow path.
  const cap = Math.ceil((IMAGES + 1) * IMAGE_MIB / 2 * MiB / 0.6)
  const node = await LocalNode.open({ dir, cache: { limits: { maxSize: { bytes: cap }, highWater: 0.9, lowWater: 0.8 } } })
  try {
    const perImage = IMAGE_MIB * MiB / CHUNK
    for (let i = 0; i < IMAGES; i++) {
      const b = new ManifestBuilder()
      // The first half is the previous image's second half: shared chunks count once.
      for (let c = 0; c < perImage; c++) b.add(digestOf(c < perImage / 2 ? `${i - 1}/${c + perImage / 2}` : `${i}/${c}`), CHUNK)
      const now = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString()
      await node.store.commitImage(b.build(digestOf(`image ${i}`), DEFAULT_CHUNKER, { type: 'machine', name: `img-${i}`, format: 'raw' }), { state: 'available', pinned: i % 10 === 0, created: now, lastAccess: now })
    }
    const logical = IMAGES * IMAGE_MIB / 1024
    const distinct = (IMAGES + 1) * IMAGE_MIB / 2 / 1024
    // Memory: peak of heap plus array buffers (the table lives in one, outside the JS heap) during a
    // pass, less what it was before; the baseline's peak is the decoded manifests' garbage alone.
    const memory = (): number => { const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers }
    const measured = async <T>(fn: () => Promise<T>): Promise<{ value: T, ms: number, bytes: number }> => {
      global.gc?.()
      const before = memory()
      let peak = before
      const sampler = setInterval(() => { peak = Math.max(peak, memory()) }, 5)
      const t = performance.now()
      const value = await fn()
      const ms = performance.now() - t
      clearInterval(sampler)
      return { value, ms, bytes: Math.max(peak, memory()) - before }
    }
    const base = await measured(async () => { for (const r of await node.store.listImages()) await node.store.getManifest(r) })
    const baseline = base.ms
    const surveyed = await measured(async () => await node.df())
    const report = surveyed.value
    const survey = surveyed.ms

    const t3 = performance.now()
    const admissions = []
    for (let i = 0; i < 20; i++) {
      const b = new ManifestBuilder()
      for (let c = 0; c < perImage / 16; c++) b.add(digestOf(`new ${i}/${c}`), CHUNK)
      const manifest = b.build(digestOf(`new image ${i}`), DEFAULT_CHUNKER, { type: 'machine', name: `new-${i}`, format: 'raw' })
      admissions.push(await node.evictor.admit({ hex: Buffer.from(manifest.digest).toString('hex'), size: manifest.size, manifest }))
    }
    const admit = performance.now() - t3
    for (const a of admissions) a.release()

    // The survey's table on its own (its memory is deterministic: 20 bytes a slot).
    const table = new ChunkRefs()
    for (const r of await node.store.listImages()) table.add(await node.store.getManifest(r), 0)

    // Far below the cap: a node with a cap of a pebibyte looks at the records only.
    await node.close()
    const roomy = await LocalNode.open({ dir, cache: { limits: { maxSize: { bytes: 1024 ** 5 }, highWater: 0.9, lowWater: 0.8 } } })
    const t2 = performance.now()
    await roomy.evictor.enforce()
    const fast = performance.now() - t2
    await roomy.close()

    console.log(`# eviction accounting, ${machine()}`)
    console.log(`${IMAGES} images × ${IMAGE_MIB} MiB (64 KiB chunks, half shared with the previous image): ${logical.toFixed(0)} GiB of images, ${distinct.toFixed(1)} GiB distinct; df says ${(report.used / 1024 ** 3).toFixed(1)} GiB used, ${(report.pinned / 1024 ** 3).toFixed(1)} GiB pinned`)
    console.log(mdTable(['pass', 'ms', 'ms per GiB of images', 'ratio to baseline'], [
      ['baseline (records + manifests)', baseline.toFixed(0), (baseline / logical).toFixed(1), '1.00'],
      ['survey (df / eviction near the cap)', survey.toFixed(0), (survey / logical).toFixed(1), (survey / baseline).toFixed(2)],
      ['fast path (enforce far below the cap)', fast.toFixed(0), (fast / logical).toFixed(2), (fast / baseline).toFixed(3)],
      ['20 admissions near the cap (one survey, reused)', admit.toFixed(0), (admit / logical).toFixed(1), (admit / baseline).toFixed(2)]
    ]))
    console.log(`memory added (heap and array buffers, peak sampled every 5 ms): baseline ${(base.bytes / MiB).toFixed(0)} MiB, survey ${(surveyed.bytes / MiB).toFixed(0)} MiB (the decoded manifests' garbage dominates both)`)
    console.log(`the survey's chunk table: ${(table.byteLength / MiB).toFixed(0)} MiB for ${(table.total / 1024 ** 3).toFixed(1)} GiB distinct = ${(table.byteLength / MiB / distinct).toFixed(2)} MiB per distinct GiB`)
    if (Math.abs(report.used - distinct * 1024 ** 3) > CHUNK) throw new Error(`df counted ${report.used} bytes, expected ${distinct * 1024 ** 3}`)
  } finally {
    await node.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
