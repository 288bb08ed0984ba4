import { join } from 'node:path'
import { Level } from 'level'
import t from 'tap'
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
    // Writes other bytes under the chunk's key with a raw LevelDB handle, as disk damage would.
    corrupt: async (digest, bytes) => {
      await store.close()
      const raw = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' })
      await raw.sublevel<Uint8Array, Uint8Array>('c', { keyEncoding: 'view', valueEncoding: 'view' }).put(digest, bytes)
      await raw.close()
      store = await LevelStore.open({ dir })
    }
  }
})
