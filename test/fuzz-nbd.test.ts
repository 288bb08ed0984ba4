import { connect } from 'node:net'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { ImageNotFoundError } from '../src/errors.js'
import type { NbdExports } from '../src/serve/nbd-connection.js'
import { startNbdServer } from '../src/serve/nbd-server.js'
import { silentLogger } from '../src/util/log.js'
import { tempDir } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { concat, fuzzParams, mutate, mutations } from './helpers/fuzz.js'
import { RawNbd, infoPayload, u32 } from './helpers/nbd-client.js'

/*
 * Fuzzing of the NBD server with what a client may send: handshakes and options, valid, truncated,
 * mutated or absurd, then read/write/other requests at any offset and length. The server never
 * crashes (this process would), never reads its export beyond the image, and still serves a good
 * client afterwards.
 */

const IMAGE = seededBytes(300_000, 'fuzz-nbd')
const NAME = 'sha256:' + 'ab'.repeat(32)

interface Seen { outOfRange: number, reads: number }

function fakeExports (seen: Seen): NbdExports {
  return {
    open: async name => {
      if (name !== NAME) throw new ImageNotFoundError(`no image ${name.slice(0, 80)}`)
      return {
        size: IMAGE.length,
        read: async (offset, length) => {
          seen.reads++
          if (offset < 0 || length < 1 || offset + length > IMAGE.length) seen.outOfRange++
          return IMAGE.subarray(offset, offset + length)
        },
        close: () => {}
      }
    },
    list: async () => [NAME]
  }
}

function option (code: number, data: Uint8Array): Uint8Array {
  return concat(Buffer.from('IHAVEOPT'), u32(code), u32(data.length), data)
}

function request (type: number, offset: bigint, length: number, payload = new Uint8Array(0)): Uint8Array {
  const b = Buffer.alloc(28)
  b.writeUInt32BE(0x25609513, 0)
  b.writeUInt16BE(type, 6)
  b.writeBigUInt64BE(7n, 8)
  b.writeBigUInt64BE(offset, 16)
  b.writeUInt32BE(length, 24)
  return concat(b, payload)
}

const optionArb = fc.oneof(
  fc.constant(option(7, infoPayload(NAME, [3]))),
  fc.constant(option(6, infoPayload(NAME))),
  fc.constant(option(8, new Uint8Array(0))),
  fc.constant(option(3, new Uint8Array(0))),
  fc.tuple(fc.integer({ min: 0, max: 20 }), fc.uint8Array({ maxLength: 64 })).map(([c, d]) => option(c, d)),
  fc.string({ maxLength: 40 }).map(s => option(7, infoPayload(s)))
)
const requestArb = fc.oneof(
  fc.tuple(fc.nat({ max: IMAGE.length + 10 }), fc.nat({ max: 70_000 })).map(([o, l]) => request(0, BigInt(o), l)),
  fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom(0, 1, 4096, 2 ** 25, 2 ** 25 + 1, 2 ** 32 - 1)).map(([o, l]) => request(0, o, l)),
  fc.tuple(fc.integer({ min: 0, max: 12 }), fc.nat({ max: 5000 }), fc.uint8Array({ maxLength: 64 })).map(([ty, o, p]) => request(ty, BigInt(o), p.length, p))
)
// Mostly a good handshake that reaches transmission (so the requests are fuzzed too), sometimes not.
const session = fc.tuple(
  fc.oneof({ weight: 4, arbitrary: fc.constant(3) }, { weight: 1, arbitrary: fc.constantFrom(1, 0, 7, 0xffffffff) }),
  fc.array(optionArb, { minLength: 0, maxLength: 3 }),
  fc.oneof({ weight: 3, arbitrary: fc.constant(option(7, infoPayload(NAME))) }, { weight: 1, arbitrary: optionArb }),
  fc.array(requestArb, { minLength: 0, maxLength: 6 }),
  fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: mutations })
).map(([flags, opts, go, reqs, ops]) => {
  const bytes = concat(u32(flags), ...opts, go, ...reqs)
  return ops != null ? mutate(bytes, ops) : bytes
})

/** Sends `bytes` after the greeting, reads until the server closes or goes quiet; returns what came back. */
async function exchange (path: string, bytes: Uint8Array): Promise<number> {
  return await new Promise(resolve => {
    const s = connect(path)
    let got = 0
    let timer: NodeJS.Timeout | undefined
    const done = (): void => { clearTimeout(timer); s.destroy(); resolve(got) }
    const quiet = (): void => { clearTimeout(timer); timer = setTimeout(done, 60) }
    s.on('data', b => { got += b.length; quiet() })
    s.on('error', done)
    s.on('close', done)
    s.on('connect', () => { s.write(bytes); quiet() })
  })
}

t.test('malformed NBD handshakes and requests: no crash, no read beyond the image, still serving', async t => {
  const dir = await tempDir(t)
  const seen: Seen = { outOfRange: 0, reads: 0 }
  const server = await startNbdServer(fakeExports(seen), { kind: 'unix', path: join(dir, 'nbd.sock') }, { log: silentLogger })
  t.teardown(server.close)
  let runs = 0
  await fc.assert(fc.asyncProperty(session, async bytes => {
    runs++
    await exchange(join(dir, 'nbd.sock'), bytes)
    return seen.outOfRange === 0
  }), fuzzParams(300))
  t.equal(seen.outOfRange, 0, `${runs} sessions, ${seen.reads} reads of the export: none beyond the image`)

  const c = await RawNbd.connect(join(dir, 'nbd.sock'))
  t.teardown(() => { c.close() })
  await c.handshake()
  c.option(7, infoPayload(NAME))
  await c.reply()
  t.equal((await c.reply())?.type, 1, 'a good client still gets its export')
  c.request(0, 1n, 1000n, 5000)
  t.equal((await c.simpleReply())?.error, 0)
  t.ok((await c.read(5000))?.equals(IMAGE.subarray(1000, 6000)), 'and its bytes')
})
