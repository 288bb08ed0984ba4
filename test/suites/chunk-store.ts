import type { Test } from 'tap'
import { chunkOf } from '../../src/chunks/cid.js'
import { ChunkCorruptError, ChunkNotFoundError } from '../../src/errors.js'
import type { ChunkStore } from '../../src/store/chunk-store.js'
import { seededBytes } from '../helpers/data.js'

export interface ChunkStoreFixture {
  store: ChunkStore
  close: () => Promise<void>
  /** Overwrites a stored chunk's bytes behind the store's back, where the backend can. */
  corrupt?: (digest: Uint8Array, bytes: Uint8Array) => Promise<void>
}

/**
 * The behaviour every ChunkStore must have. Each implementation runs it with its own `open`; a
 * third-party store passes this suite before it is used.
 */
export function chunkStoreSuite (t: Test, name: string, open: () => Promise<ChunkStoreFixture>): void {
  t.test(`${name}: ChunkStore compliance`, async t => {
    const chunks = [1, 100, 65536, 300000].map((n, i) => chunkOf(seededBytes(n, `chunk-${i}`)))

    t.test('stored chunks come back verified, in order', async t => {
      const f = await open()
      t.teardown(f.close)
      await f.store.putMany(chunks)
      t.same(await f.store.hasMany(chunks.map(c => c.digest)), [true, true, true, true])
      const back = await f.store.getMany([chunks[3].digest, chunks[0].digest])
      t.ok(Buffer.from(back[0].bytes).equals(chunks[3].bytes) && Buffer.from(back[1].bytes).equals(chunks[0].bytes), 'bytes and order')
      t.equal((await f.store.get(chunks[2].digest)).verified, true)
    })

    t.test('a missing chunk is an error naming its CID, never undefined', async t => {
      const f = await open()
      t.teardown(f.close)
      await f.store.putMany(chunks.slice(0, 1))
      t.equal(await f.store.has(chunks[1].digest), false)
      await t.rejects(f.store.get(chunks[1].digest), ChunkNotFoundError)
      await t.rejects(f.store.getMany([chunks[0].digest, chunks[1].digest]), new RegExp(f.store.cidOf(chunks[1].digest).toString()))
    })

    t.test('put is idempotent; delete removes and ignores absent chunks', async t => {
      const f = await open()
      t.teardown(f.close)
      await f.store.putMany(chunks)
      await f.store.putMany(chunks.slice(1, 2))
      await f.store.deleteMany([chunks[0].digest, chunks[0].digest, chunkOf(new Uint8Array([9])).digest])
      t.same(await f.store.hasMany(chunks.map(c => c.digest)), [false, true, true, true])
      const listed: string[] = []
      for await (const d of f.store.digests()) listed.push(Buffer.from(d).toString('hex'))
      t.same(listed, chunks.slice(1).map(c => Buffer.from(c.digest).toString('hex')).sort(), 'digests() lists what is stored, in key order')
    })

    t.test('an aborted signal stops the operation', async t => {
      const f = await open()
      t.teardown(f.close)
      const signal = AbortSignal.abort()
      await t.rejects(f.store.putMany(chunks, { signal }), { name: 'AbortError' })
      t.same(await f.store.hasMany([chunks[0].digest]), [false], 'nothing was written')
    })

    t.test('damaged bytes are reported on read, not returned', async t => {
      const f = await open()
      t.teardown(f.close)
      if (f.corrupt == null) {
        t.pass(`skipped: ${name} cannot damage stored bytes from outside`)
        return
      }
      await f.store.putMany(chunks.slice(2, 3))
      const bad = Uint8Array.from(chunks[2].bytes)
      bad[1234] ^= 0x40
      await f.corrupt(chunks[2].digest, bad)
      await t.rejects(f.store.get(chunks[2].digest), ChunkCorruptError)
    })
  })
}
