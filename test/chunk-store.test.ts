import { join } from 'node:path'
import { Level } from 'level'
import t from 'tap'
import { logKey, seqOf } from '../src/store/level-chunks.js'
import { LevelStore } from '../src/store/level-store.js'
import { tempDir } from './helpers/cli.js'
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
