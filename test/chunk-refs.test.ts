import { createHash } from 'node:crypto'
import t from 'tap'
import { BUSY, ChunkRefs, LEASED, PINNED } from '../src/cache/chunk-refs.js'
import { DEFAULT_CHUNKER } from '../src/chunks/fastcdc.js'
import { ManifestBuilder, type Manifest } from '../src/chunks/manifest.js'

/** A manifest of the given chunk ids: chunk `id` has the digest sha256(id) and 1000 + id bytes. */
function manifestOf (name: string, ids: number[]): Manifest {
  const b = new ManifestBuilder()
  for (const id of ids) b.add(createHash('sha256').update(String(id)).digest(), 1000 + id)
  return b.build(createHash('sha256').update(name).digest(), DEFAULT_CHUNKER, { type: 'other', name, format: '' })
}

t.test('the accounting table agrees with a plain model through adds, growth and removals', async t => {
  let seed = 7 // mulberry32: a reproducible spread of chunk ids and protections
  const rnd = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) % n
  }
  const images = Array.from({ length: 80 }, (_, i) => {
    const ids = Array.from({ length: 50 + rnd(400) }, () => rnd(6000)) // repeats within and across images
    return { name: `img${i}`, ids, protect: rnd(4) === 0 ? [PINNED, LEASED, BUSY][rnd(3)] : 0 }
  })
  const refs = new ChunkRefs()
  const model = new Map<number, { evictable: number, mask: number }>()
  for (const im of images) {
    refs.add(manifestOf(im.name, im.ids), im.protect)
    for (const id of im.ids) {
      const e = model.get(id) ?? { evictable: 0, mask: 0 }
      if (im.protect !== 0) e.mask |= im.protect
      else e.evictable++
      model.set(id, e)
    }
  }
  const bytes = (keep: (e: { evictable: number, mask: number }) => boolean): number => [...model].filter(([, e]) => keep(e)).reduce((n, [id]) => n + 1000 + id, 0)
  t.equal(refs.total, bytes(() => true), 'distinct bytes')
  t.equal(refs.bytesWith(PINNED), bytes(e => (e.mask & PINNED) !== 0), 'pinned bytes')
  t.equal(refs.bytesWith(LEASED | BUSY), bytes(e => (e.mask & (LEASED | BUSY)) !== 0), 'leased or busy bytes')
  const known = [...model.keys()][0]
  t.equal(refs.newBytes(manifestOf('new', [known, 6001, 6001, 6002])), 7001 + 7002, 'new bytes: unseen chunks, each once')
  let removals = 0
  for (const im of images.filter(i => i.protect === 0)) {
    let freed = 0
    for (const id of im.ids) {
      const e = model.get(id)
      if (e == null) continue
      if (e.evictable <= 1 && e.mask === 0) {
        model.delete(id)
        freed += 1000 + id
      } else {
        e.evictable = Math.max(0, e.evictable - 1)
      }
    }
    if (refs.remove(manifestOf(im.name, im.ids)) !== freed) t.fail(`removing ${im.name} freed the wrong bytes`)
    removals++
  }
  t.ok(removals > 40, `${removals} images removed`)
  t.equal(refs.total, bytes(() => true), 'distinct bytes after the removals')
  t.equal(refs.bytesWith(0), bytes(e => e.mask === 0), 'nothing evictable is left unnamed')
})
