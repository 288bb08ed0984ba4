import t from 'tap'
import { VerifiedArrays } from '../src/chunks/cid.js'
import { ChunkCorruptError } from '../src/errors.js'
import { fetchFromOrigin } from '../src/fetch/origin-chunks.js'
import { buildImage, memoryOrigin, seededImageBytes, wantsOf } from '../src/testing/memory-image.js'
import { VirtualClock } from '../src/testing/virtual-clock.js'

const image = buildImage(seededImageBytes(2 * 1024 * 1024, 5))

/** Reads every chunk of the image from a memory origin whose 64 KiB pieces arrive `gapMs` apart; returns the batches stored. */
async function batchesAt (gapMs: number): Promise<number[]> {
  const clock = new VirtualClock()
  const origin = memoryOrigin([image], { pieceBytes: 64 * 1024, link: async () => { await clock.sleep(gapMs) } })
  const batches: number[] = []
  const bytes: Uint8Array[] = []
  await clock.run(fetchFromOrigin(origin, image.hex, wantsOf(image), {
    deliver: async chunks => { batches.push(chunks.length); for (const c of chunks) bytes.push(c.bytes) },
    received: () => {}
  }, { clock }))
  t.equal(Buffer.concat(bytes).equals(image.bytes), true, 'every chunk, in order, byte for byte')
  return batches
}

t.test('a slow origin\'s chunks are stored one by one, as they arrive; a fast one\'s in batches of about 256 KiB', async t => {
  const slow = await batchesAt(20)
  // Chunks that end in the same 64 KiB piece arrive together and are stored together; none waits for a later piece.
  t.ok(slow.length >= 0.8 * image.wants.length, `${slow.length} batches for ${image.wants.length} chunks over a slow origin`)
  const fast = await batchesAt(0)
  const chunkBytes = image.bytes.length / image.wants.length
  t.ok(fast.length <= Math.ceil(image.bytes.length / (256 * 1024)) + 1, `${fast.length} batches over a fast origin`)
  t.ok(Math.max(...fast) >= Math.floor(256 * 1024 / chunkBytes) - 1, 'each about 256 KiB of chunks')
})

t.test('VerifiedArrays: an array verified once is not hashed again for the same digest; a changed copy or another digest still fails', async t => {
  const verified = new VerifiedArrays()
  const [a, b] = image.wants
  const bytes = image.bytesOf(a.digest)
  const first = verified.verify(a.digest, bytes)
  t.equal(verified.verify(a.digest, bytes), first, 'the same verified chunk, from memory')
  const copy = Uint8Array.from(bytes)
  copy[0] ^= 0xff
  t.throws(() => verified.verify(a.digest, copy), ChunkCorruptError, 'a damaged copy is hashed, and fails')
  t.throws(() => verified.verify(b.digest, bytes), ChunkCorruptError, 'the same array under another digest fails')
})
