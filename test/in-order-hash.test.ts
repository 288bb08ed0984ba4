import { createHash } from 'node:crypto'
import t from 'tap'
import { chunkEntries } from '../src/chunks/manifest.js'
import { InOrderHash } from '../src/fetch/in-order-hash.js'
import { ingest } from '../src/store/ingest.js'
import { LevelStore } from '../src/store/level-store.js'
import { seededBytes, streamOf } from './helpers/data.js'

const MiB = 1024 * 1024

async function imageIn (t: { teardown: (fn: () => Promise<void>) => void }, bytes: Uint8Array): Promise<{ store: LevelStore, manifest: Awaited<ReturnType<LevelStore['getManifest']>>, chunks: Array<{ index: number, bytes: Uint8Array }> }> {
  const store = await LevelStore.open()
  t.teardown(async () => { await store.close() })
  const { record } = await ingest(store, streamOf(bytes), { meta: { type: 'other', name: '', format: '' } })
  const manifest = await store.getManifest(record)
  const chunks = [...chunkEntries(manifest)].map(e => ({ index: e.index, bytes: bytes.subarray(e.offset, e.offset + e.length) }))
  return { store, manifest, chunks }
}

t.test('the whole-image hash comes out right whatever order the chunks arrive in', async t => {
  const bytes = seededBytes(48 * MiB, 'in-order')
  const want = createHash('sha256').update(bytes).digest('hex')
  const { store, manifest, chunks } = await imageIn(t, bytes)
  t.ok(chunks.length > 200, `${chunks.length} chunks`)

  const inOrder = new InOrderHash(store, manifest, () => false)
  for (const c of chunks) inOrder.add([c.index], c.bytes)
  t.equal((await inOrder.digest()).toString('hex'), want, 'in order')

  // Reversed: all but the first are ahead; past 32 MiB they are dropped and read back from the store.
  const reversed = new InOrderHash(store, manifest, () => false)
  for (const c of [...chunks].reverse()) reversed.add([c.index], c.bytes)
  t.equal((await reversed.digest()).toString('hex'), want, 'reversed, with chunks beyond the look-ahead read back')

  // A third stored before the fetch (never arrive), the rest shuffled and some sent twice.
  const before = (i: number): boolean => i % 3 === 0
  const mixed = new InOrderHash(store, manifest, before)
  const arriving = chunks.filter(c => !before(c.index))
  for (let i = arriving.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1)
    ;[arriving[i], arriving[j]] = [arriving[j], arriving[i]]
  }
  for (const c of [...arriving, ...arriving.slice(0, 20)]) mixed.add([c.index], c.bytes)
  t.equal((await mixed.digest()).toString('hex'), want, 'stored-before runs read from the store, duplicates ignored')

  const wrong = new InOrderHash(store, manifest, () => false)
  for (const c of chunks) wrong.add([c.index], c.index === 5 ? Buffer.alloc(c.bytes.length) : c.bytes)
  t.not((await wrong.digest()).toString('hex'), want, 'a wrong chunk changes the digest')
})
