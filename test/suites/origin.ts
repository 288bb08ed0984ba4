import { createHash } from 'node:crypto'
import type { Test } from 'tap'
import {
  DigestMismatchError, InvalidManifestError, InvalidRefError, OriginNotFoundError, OriginRangeError
} from '../../src/errors.js'
import { MAX_PROFILE_ENCODED, type Origin, type OriginTuning } from '../../src/origin/origin.js'
import { seededBytes } from '../helpers/data.js'

export interface OriginFixture {
  origin: Origin
  /** Stores an image behind the origin's back (as an operator's upload would), not through `write`. */
  put: (hex: string, bytes: Uint8Array) => Promise<void>
  /** Stores a manifest behind the origin's back. */
  putManifest: (hex: string, bytes: Uint8Array) => Promise<void>
  /**
   * Makes the connection that carries the next `bytes` bytes from the server break right after them,
   * once (a real fault on the wire). Absent for backends without a transport to break.
   */
  breakNextRead?: (bytes: number) => { fired: () => boolean }
  /** Size of the image the write tests send: large enough to take the backend's multi-part path. Default 3 MiB. */
  writeSize?: number
  teardown: () => Promise<void>
}

export interface OriginSuiteOptions {
  /** The backend, for test names. */
  name: string
  /** A fresh, empty origin with these settings. Called once per test; must be cheap (start servers once, outside). */
  setup: (tuning: OriginTuning) => Promise<OriginFixture>
}

/** Settings the tests use unless they need others: short backoff, generous timeouts. */
const TUNING: OriginTuning = { retryDelayMs: 10, timeoutMs: 15_000, retries: 3 }

export function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of source) parts.push(p)
  return Buffer.concat(parts)
}

/** Yields `bytes` in pieces of `size`, waiting for `gate` (when given) after the first half. */
async function * pieces (bytes: Uint8Array, size = 256 * 1024, gate?: Promise<void>): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < bytes.length; off += size) {
    if (gate !== undefined && off >= bytes.length / 2) {
      await gate
      gate = undefined
    }
    yield bytes.subarray(off, off + size)
  }
}

/**
 * The behaviour every Origin must have: built-in backends run it, and a third-party backend passes
 * it before it is used. Tests that need a capability (writes, manifests) or a fault to inject run
 * only where the backend says it has them, and say so when skipped.
 */
export function originSuite (t: Test, options: OriginSuiteOptions): void {
  t.test(`${options.name}: Origin compliance`, async t => {
    const image = seededBytes(1024 * 1024 + 4099, `origin-${options.name}`)
    const hex = sha256Hex(image)
    const absent = sha256Hex(Buffer.from('not stored anywhere'))

    // What the backend supports decides which tests run; skipped ones say why.
    const probe = await options.setup(TUNING)
    const caps = { ...probe.origin.capabilities }
    const breakable = probe.breakNextRead !== undefined
    await probe.origin.close?.()
    await probe.teardown()
    const readOnly = caps.write ? false : `${options.name} is read-only`

    const open = async (t: Test, tuning: OriginTuning = {}): Promise<OriginFixture> => {
      const f = await options.setup({ ...TUNING, ...tuning })
      t.teardown(async () => {
        await f.origin.close?.()
        await f.teardown()
      })
      return f
    }

    t.test('capabilities are booleans; url carries no secrets', async t => {
      const f = await open(t)
      const c = f.origin.capabilities
      for (const k of ['rangeRead', 'manifests', 'write'] as const) t.type(c[k], 'boolean', k)
      t.equal(typeof f.origin.write === 'function', c.write, 'write() exists exactly when capabilities.write')
      t.equal(typeof f.origin.writeManifest === 'function', c.write, 'writeManifest() exists exactly when capabilities.write')
      t.type(f.origin.url, 'string')
      t.notMatch(f.origin.url, /secret|password|testing@/i)
    })

    t.test('stat gives the size of a stored image and undefined for a missing one', async t => {
      const f = await open(t)
      await f.put(hex, image)
      t.same(await f.origin.stat(hex), { size: image.length })
      t.equal(await f.origin.stat(absent), undefined)
      await t.rejects(f.origin.stat('sha256:' + hex), InvalidRefError, 'only bare lower-case hex is accepted')
      await t.rejects(f.origin.stat(hex.toUpperCase()), InvalidRefError)
      await t.rejects(f.origin.stat('../' + hex.slice(3)), InvalidRefError, 'no path tricks reach the backend')
    })

    t.test('a whole read gives back the exact bytes; an empty image reads as nothing', async t => {
      const f = await open(t)
      await f.put(hex, image)
      t.ok((await collect(f.origin.read(hex))).equals(image), 'whole image')
      const empty = new Uint8Array(0)
      await f.put(sha256Hex(empty), empty)
      t.same(await f.origin.stat(sha256Hex(empty)), { size: 0 })
      t.equal((await collect(f.origin.read(sha256Hex(empty)))).length, 0)
    })

    t.test('range reads give exactly the bytes asked for', async t => {
      const f = await open(t)
      await f.put(hex, image)
      const n = image.length
      const cases: Array<[string, number, number | undefined]> = [
        ['start', 0, 100],
        ['middle, across read pieces', 123457, 1024 * 1024 - 200000],
        ['end', n - 1000, 1000],
        ['first byte', 0, 1],
        ['single byte in the middle', 777777, 1],
        ['last byte', n - 1, 1],
        ['from an offset to the end', n - 5, undefined],
        ['from 0 with no length', 0, undefined],
        ['the whole image as a range', 0, n]
      ]
      for (const [name, offset, length] of cases) {
        const got = await collect(f.origin.read(hex, { offset, length }))
        t.ok(got.equals(image.subarray(offset, length === undefined ? undefined : offset + length)), `${name}: offset ${offset}, length ${length}`)
      }
      t.equal((await collect(f.origin.read(hex, { offset: 5000, length: 0 }))).length, 0, 'zero length in the middle')
      t.equal((await collect(f.origin.read(hex, { offset: n, length: 0 }))).length, 0, 'zero length at the end')
      t.equal((await collect(f.origin.read(hex, { offset: n }))).length, 0, 'from the end to the end')
    })

    t.test('a range past the end is an OriginRangeError, before any byte', async t => {
      const f = await open(t)
      await f.put(hex, image)
      const n = image.length
      for (const [offset, length] of [[n - 10, 11], [n, 1], [n + 5, 1], [n + 1, 0], [n + 1, undefined]] as Array<[number, number | undefined]>) {
        let bytes = 0
        await t.rejects((async () => { for await (const p of f.origin.read(hex, { offset, length })) bytes += p.length })(), OriginRangeError, `offset ${offset}, length ${length}`)
        t.equal(bytes, 0, 'nothing was yielded first')
      }
      await t.rejects(collect(f.origin.read(hex, { offset: -1, length: 1 })), RangeError, 'a negative offset is a programming error')
    })

    t.test('a missing image is an OriginNotFoundError', async t => {
      const f = await open(t)
      await t.rejects(collect(f.origin.read(absent)), OriginNotFoundError)
      await t.rejects(collect(f.origin.read(absent, { offset: 10, length: 10 })), OriginNotFoundError)
      await t.rejects(collect(f.origin.read(absent, { offset: 0, length: 0 })), OriginNotFoundError)
      await t.rejects(collect(f.origin.read(absent)), { code: 'IMGSWARM_ORIGIN_NOT_FOUND', message: new RegExp(absent) }, 'the message names the object')
    })

    t.test('manifests: present, absent, and bounded', async t => {
      const f = await open(t, { maxManifestBytes: 1000 })
      await f.put(hex, image)
      t.equal(await f.origin.readManifest(hex), undefined, 'no manifest yet')
      t.equal(await f.origin.readManifest(absent), undefined, 'none for a missing image')
      if (!f.origin.capabilities.manifests) return
      const manifest = seededBytes(1000, 'manifest')
      await f.putManifest(hex, manifest)
      const got = await f.origin.readManifest(hex)
      t.ok(got !== undefined && Buffer.from(got).equals(manifest), 'the stored bytes come back')
      await f.putManifest(absent, seededBytes(1001, 'big manifest'))
      await t.rejects(f.origin.readManifest(absent), InvalidManifestError, 'a manifest over the limit is refused')
    })

    t.test('an aborted signal stops every call with an AbortError', async t => {
      const f = await open(t)
      const big = seededBytes(4 * 1024 * 1024, 'abort')
      const bigHex = sha256Hex(big)
      await f.put(bigHex, big)
      const signal = AbortSignal.abort()
      await t.rejects(f.origin.stat(bigHex, { signal }), { name: 'AbortError' }, 'stat')
      await t.rejects(f.origin.readManifest(bigHex, { signal }), { name: 'AbortError' }, 'readManifest')
      await t.rejects(collect(f.origin.read(bigHex, { signal })), { name: 'AbortError' }, 'read')
      const ac = new AbortController()
      let got = 0
      await t.rejects((async () => {
        for await (const p of f.origin.read(bigHex, { signal: ac.signal })) {
          got += p.length
          ac.abort()
        }
      })(), { name: 'AbortError' }, 'a read aborted mid-way')
      t.ok(got > 0 && got < big.length, `it stopped part-way (${got} of ${big.length} bytes)`)
      t.ok((await collect(f.origin.read(bigHex, { offset: 0, length: 10 }))).equals(big.subarray(0, 10)), 'the origin still works afterwards')
    })

    t.test('a transfer that breaks mid-way is resumed where it stopped', { skip: breakable ? false : `${options.name} has no transport to break` }, async t => {
      const f = await open(t)
      if (f.breakNextRead === undefined) throw new Error('the fixture stopped offering breakNextRead')
      const big = seededBytes(3 * 1024 * 1024 + 1, 'resume')
      const bigHex = sha256Hex(big)
      await f.put(bigHex, big)
      let fault = f.breakNextRead(300_000)
      t.ok((await collect(f.origin.read(bigHex))).equals(big), 'whole read: same bytes')
      t.ok(fault.fired(), 'the connection was cut')
      fault = f.breakNextRead(200_000)
      t.ok((await collect(f.origin.read(bigHex, { offset: 1001, length: 2_000_000 }))).equals(big.subarray(1001, 2_001_001)), 'ranged read: same bytes')
      t.ok(fault.fired(), 'the connection was cut')
    })

    t.test('writes: the image is stored verified, and invisible until complete', { skip: readOnly }, async t => {
      const f = await open(t)
      if (f.origin.write === undefined || f.origin.writeManifest === undefined) throw new Error('capabilities.write without write()/writeManifest()')
      const data = seededBytes(f.writeSize ?? 3 * 1024 * 1024, 'written')
      const dataHex = sha256Hex(data)
      let release: () => void = () => {}
      const gate = new Promise<void>(resolve => { release = resolve })
      const writing = f.origin.write(dataHex, pieces(data, 256 * 1024, gate), { size: data.length })
      await new Promise(resolve => setTimeout(resolve, 300))
      t.equal(await f.origin.stat(dataHex), undefined, 'half-written: stat sees nothing')
      await t.rejects(collect(f.origin.read(dataHex)), OriginNotFoundError, 'half-written: read finds nothing')
      release()
      t.same(await writing, { size: data.length }, 'write resolves with the size')
      t.same(await f.origin.stat(dataHex), { size: data.length })
      t.ok((await collect(f.origin.read(dataHex))).equals(data), 'read back')
      t.ok((await collect(f.origin.read(dataHex, { offset: data.length - 7, length: 7 }))).equals(data.subarray(-7)), 'range of a written image')

      await f.origin.writeManifest(dataHex, Buffer.from('manifest bytes'))
      t.equal(Buffer.from(await f.origin.readManifest(dataHex) ?? []).toString(), 'manifest bytes', 'written manifest reads back')
    })

    t.test('boot profiles: absent, written, read back, and bounded', async t => {
      const f = await open(t)
      if (f.origin.readProfile === undefined) {
        t.equal(f.origin.writeProfile, undefined, 'no writeProfile without readProfile')
        return
      }
      t.equal(await f.origin.readProfile(absent), undefined, 'none for an image without one')
      if (f.origin.writeProfile === undefined || !f.origin.capabilities.write) return
      await f.put(hex, image)
      const profile = seededBytes(5000, 'profile')
      await f.origin.writeProfile(hex, profile)
      const got = await f.origin.readProfile(hex)
      t.ok(got !== undefined && Buffer.from(got).equals(profile), 'the written bytes come back')
      await t.rejects(f.origin.writeProfile(hex, new Uint8Array(MAX_PROFILE_ENCODED + 1)), InvalidManifestError, 'a profile over the limit is refused')
      const still = await f.origin.readProfile(hex)
      t.ok(still !== undefined && Buffer.from(still).equals(profile), 'and the stored one is kept')
    })

    t.test('writes: wrong bytes and aborted writes leave nothing behind', { skip: readOnly }, async t => {
      const f = await open(t)
      if (f.origin.write === undefined) throw new Error('capabilities.write without write()')
      const data = seededBytes(f.writeSize ?? 3 * 1024 * 1024, 'wrong')
      const claimed = sha256Hex(Buffer.from('something else'))
      await t.rejects(f.origin.write(claimed, pieces(data)), DigestMismatchError, 'bytes that do not hash to the name are refused')
      t.equal(await f.origin.stat(claimed), undefined, 'and not stored')

      const dataHex = sha256Hex(data)
      const ac = new AbortController()
      // Abort after 60% of the bytes: past the first part of a multi-part upload.
      const source = (async function * () {
        let sent = 0
        for await (const p of pieces(data)) {
          sent += p.length
          if (sent >= data.length * 0.6 && !ac.signal.aborted) ac.abort()
          yield p
        }
      })()
      await t.rejects(f.origin.write(dataHex, source, { signal: ac.signal }), { name: 'AbortError' }, 'an aborted write rejects with AbortError')
      t.equal(await f.origin.stat(dataHex), undefined, 'and stores nothing')
      await t.rejects(f.origin.write(dataHex, pieces(data), { signal: AbortSignal.abort() }), { name: 'AbortError' }, 'a write with an aborted signal does not start')

      const empty = new Uint8Array(0)
      t.same(await f.origin.write(sha256Hex(empty), pieces(empty)), { size: 0 }, 'an empty image can be written')
      t.same(await f.origin.stat(sha256Hex(empty)), { size: 0 })
    })
  })
}
