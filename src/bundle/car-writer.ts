import { CarWriter } from '@ipld/car/writer'
import type { CID } from 'multiformats/cid'
import type { CarBlock } from './car-reader.js'

/**
 * The bytes of a CARv1 file with `roots` and `blocks`, as a pull stream: `@ipld/car`'s CarWriter
 * resolves each `put` only once its bytes were taken, so blocks are read no faster than the consumer
 * writes them. A consumer that stops early (an error on its side) ends the producer after the block in
 * hand, which lets `blocks` release what it holds (the store's read lock).
 */
export async function * carBytes (roots: CID[], blocks: AsyncIterable<CarBlock>): AsyncGenerator<Uint8Array> {
  const { writer, out } = CarWriter.create(roots)
  let stopped = false
  let failure: { err: unknown } | undefined
  const producing = (async () => {
    try {
      for await (const block of blocks) {
        await writer.put(block)
        if (stopped) break
      }
    } catch (err) {
      failure = { err }
    } finally {
      await writer.close().catch(() => {})
    }
  })()
  const it = out[Symbol.asyncIterator]()
  let drained = false
  try {
    while (true) {
      const r = await it.next()
      if (r.done === true) break
      yield r.value
    }
    drained = true
  } finally {
    if (!drained) {
      stopped = true
      // Bounded: the producer stops after the put in flight, then closing the writer ends `out`.
      while ((await it.next()).done !== true) { /* discard: the consumer is gone */ }
    }
    await producing
  }
  if (failure != null) throw failure.err
}
