import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import t from 'tap'
import { chunkOf } from '../src/chunks/cid.js'
import { logKey, seqOf } from '../src/store/level-chunks.js'
import { LevelStore } from '../src/store/level-store.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { chunkStoreSuite } from './suites/chunk-store.js'

// The same store code runs over an in-memory abstract-level database and over LevelDB on disk.
chunkStoreSuite(t, 'in-memory', async () => {
  const store = await LevelStore.open()
  return { store, close: async () => { await store.close() } }
})

chunkStoreSuite(t, 'LevelDB on disk', async () => {
  const dir = await tempDir(t)
  let store = await LevelStore.open({ dir })
  return {
    get store () { return store },
    close: async () => { await store.close() },
    // Writes other bytes where the index says the chunk is, with raw LevelDB handles, as disk damage would.
    corrupt: async (digest, bytes) => {
      await store.close()
      const catalog = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' })
      const entry = await catalog.sublevel<Uint8Array, Uint8Array>('x', { keyEncoding: 'view', valueEncoding: 'view' }).get(digest)
      await catalog.close()
      if (entry === undefined) throw new Error('the chunk to corrupt is not in the index')
      const log = new Level<Uint8Array, Uint8Array>(join(dir, 'chunks'), { keyEncoding: 'view', valueEncoding: 'view' })
      await log.put(logKey(seqOf(entry), digest), bytes)
      await log.close()
      store = await LevelStore.open({ dir })
    }
  }
})

/**
 * Peers deliver chunks 4 MiB at a time. Written to LevelDB as one batch, each made a memtable and a
 * level-0 table of 4 MiB, and every table read back is mapped into the daemon's resident memory. The
 * log takes them in slices instead: no table grows much past the 1 MiB write buffer, and two writers
 * at once lose nothing.
 */
t.test('large batches reach the chunk log in slices: tables stay near the write buffer, every chunk reads back', async t => {
  const dir = await tempDir(t)
  let store = await LevelStore.open({ dir })
  const batch = (seed: string): ReturnType<typeof chunkOf>[] => Array.from({ length: 64 }, (_, i) => chunkOf(seededBytes(64 * 1024, `${seed}-${i}`)))
  const a = batch('a')
  const b = batch('b')
  await Promise.all([store.putMany(a), store.putMany(b)])
  await store.close()
  // Reopening turns what is still in LevelDB's write-ahead log into tables as well.
  store = await LevelStore.open({ dir })
  t.teardown(async () => { await store.close() })
  const tables = (await readdir(join(dir, 'chunks'))).filter(f => f.endsWith('.ldb'))
  const sizes = await Promise.all(tables.map(async f => (await stat(join(dir, 'chunks', f))).size))
  t.ok(sizes.reduce((s, n) => s + n, 0) >= 8 * 1024 * 1024, 'the 8 MiB of chunks are in tables')
  t.ok(Math.max(...sizes) <= 1.75 * 1024 * 1024, `no table much larger than the write buffer (largest ${Math.max(...sizes)} bytes)`)
  let same = 0
  for (const c of [...a, ...b]) if (Buffer.from((await store.get(c.digest)).bytes).equals(Buffer.from(c.bytes))) same++
  t.equal(same, 128, 'every chunk of both writers reads back byte for byte')
})
