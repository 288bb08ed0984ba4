import t from 'tap'
import { LocalNode } from '../src/local-node.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes, streamOf } from './helpers/data.js'

t.test('gc frees the chunks of a failed image, keeps its record, and keeps chunks it shares with a good one', async t => {
  const node = await LocalNode.open({ dir: await tempDir(t) })
  t.teardown(async () => { await node.close() })
  const shared = seededBytes(2 * 1024 * 1024, 'shared part')
  const good = Buffer.concat([shared, seededBytes(1024 * 1024, 'good tail')])
  const bad = Buffer.concat([shared, seededBytes(3 * 1024 * 1024, 'failed tail')])
  const { record: keep } = await node.importStream(streamOf(good))
  const { record: failed } = await node.importStream(streamOf(bad))
  await node.store.updateRecord(failed.ref, { state: 'failed', reason: 'a fetch that did not finish' })
  const before = (await node.store.chunkStats()).bytes
  const freed = await node.gc()
  t.ok(freed.bytes >= 3 * 1024 * 1024 - 256 * 1024, `gc freed the failed image's own chunks (${freed.bytes} bytes)`)
  t.equal((await node.store.chunkStats()).bytes, before - freed.bytes)
  t.equal((await node.store.resolve(failed.ref)).state, 'failed', 'the failed record stays, for a retry')
  const report = await node.verify(keep.ref)
  t.same(report.problems, [], 'the good image, which shares chunks with it, is whole')
})
