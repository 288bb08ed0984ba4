import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { Chunker, DEFAULT_CHUNKER, type ChunkerParams } from '../src/chunks/fastcdc.js'
import { seededBytes } from './helpers/data.js'

function chunkAll (data: Uint8Array, pieceSizes: () => number, params: ChunkerParams = DEFAULT_CHUNKER): Uint8Array[] {
  const chunker = new Chunker(params)
  const out: Uint8Array[] = []
  for (let off = 0; off < data.length;) {
    const n = Math.min(pieceSizes(), data.length - off)
    out.push(...chunker.push(data.subarray(off, off + n)))
    off += n
  }
  out.push(...chunker.finish())
  return out
}

const hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

t.test('boundaries depend only on content, not on how input is split', async t => {
  const data = seededBytes(6 * 1024 * 1024, 'split')
  const whole = chunkAll(data, () => data.length).map(hex)
  const mib = chunkAll(data, () => 1024 * 1024).map(hex)
  let seed = 1
  const odd = chunkAll(data, () => { seed = (seed * 1103515245 + 12345) % 2147483648; return 1 + seed % 70000 }).map(hex)
  const tiny = chunkAll(data.subarray(0, 512 * 1024), () => 7).map(hex)
  t.same(mib, whole, '1 MiB pieces')
  t.same(odd, whole, 'random piece sizes from 1 byte to 68 KiB')
  t.same(tiny, chunkAll(data.subarray(0, 512 * 1024), () => 512 * 1024).map(hex), '7-byte pieces')
  t.ok(whole.length > 40, `split into ${whole.length} chunks`)
})

t.test('chunks reassemble to the input and respect the size bounds', async t => {
  const data = randomBytes(16 * 1024 * 1024)
  const chunks = chunkAll(data, () => 1 << 20)
  t.ok(Buffer.concat(chunks).equals(data), 'concatenation is the input')
  const { min, avg, max } = DEFAULT_CHUNKER
  for (const c of chunks.slice(0, -1)) {
    if (c.length < min || c.length > max) t.fail(`chunk of ${c.length} bytes outside ${min}…${max}`)
  }
  const mean = data.length / chunks.length
  t.ok(mean > avg * 0.6 && mean < avg * 1.6, `mean chunk ${Math.round(mean)} bytes is near the ${avg}-byte target`)
})

t.test('a run of zeros becomes max-size chunks that are all identical', async t => {
  const chunks = chunkAll(new Uint8Array(4 * DEFAULT_CHUNKER.max), () => 1 << 20)
  t.equal(chunks.length, 4)
  t.equal(new Set(chunks.map(hex)).size, 1, 'one distinct chunk')
})

t.test('a 1-byte insertion in the middle of 64 MiB changes at most 3 chunks', async t => {
  const v1 = seededBytes(64 * 1024 * 1024, 'v1')
  const mid = v1.length / 2
  const v2 = Buffer.concat([v1.subarray(0, mid), Buffer.from([0x42]), v1.subarray(mid)])
  const a = new Set(chunkAll(v1, () => 1 << 20).map(hex))
  const b = chunkAll(v2, () => 1 << 20).map(hex)
  const changed = b.filter(h => !a.has(h)).length
  t.ok(changed >= 1 && changed <= 3, `${changed} of ${b.length} chunks changed`)
})

t.test('empty input yields no chunks; bad parameters are refused', async t => {
  t.same(chunkAll(new Uint8Array(0), () => 1), [])
  t.throws(() => new Chunker({ min: 1000, avg: 3000, max: 9000 }), /power of two/)
  t.throws(() => new Chunker({ min: 8192, avg: 4096, max: 16384 }), /invalid chunker parameters/)
})
