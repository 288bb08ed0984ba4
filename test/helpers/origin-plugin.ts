/**
 * An origin plug-in as a third party would write one: a module whose default export is a factory
 * `(url, options) => Origin`. It keeps objects in memory, in a store named by the URL's `store`
 * parameter (`./origin-plugin.js?store=a`), so that a test can fill it through {@link memoryStore}.
 * Its reads go through imgswarm's exported `resumableRead`, as a plug-in's may.
 */
import { createHash } from 'node:crypto'
import { DigestMismatchError, InvalidManifestError, InvalidRefError, OriginError, OriginNotFoundError } from '../../src/errors.js'
import type { Origin, OriginFactory } from '../../src/origin/origin.js'
import { resumableRead } from '../../src/origin/resumable-read.js'

export interface MemoryStore {
  objects: Map<string, Uint8Array>
  /** When set, the next transfer fails (as a broken connection would) after this many bytes, once. */
  breakAfter?: { bytes: number, fired: boolean }
}

const stores = new Map<string, MemoryStore>()

/** The store behind `?store=name`, created on first use. */
export function memoryStore (name: string): MemoryStore {
  let s = stores.get(name)
  if (s === undefined) {
    s = { objects: new Map() }
    stores.set(name, s)
  }
  return s
}

const factory: OriginFactory = (url, options) => {
  const name = new URL(url, 'file:///').searchParams.get('store') ?? 'default'
  const store = memoryStore(name)
  const tuning = { retryDelayMs: Number(options.retryDelayMs ?? 10), timeoutMs: Number(options.timeoutMs ?? 5000) }
  const maxManifestBytes = Number(options.maxManifestBytes ?? 64 * 1024 * 1024)
  const check = (hex: string): void => { if (!/^[0-9a-f]{64}$/.test(hex)) throw new InvalidRefError(`bad digest ${hex}`) }
  const origin: Origin = {
    url: `memory:${name}`,
    capabilities: { rangeRead: true, manifests: true, write: true },
    async stat (hex, opts) {
      check(hex)
      opts?.signal?.throwIfAborted()
      const o = store.objects.get(hex)
      return o === undefined ? undefined : { size: o.length }
    },
    read (hex, opts) {
      check(hex)
      return resumableRead({
        what: `memory:${name}/${hex}`,
        stat: async () => await origin.stat(hex),
        mapError: err => err,
        open: async (start, end) => {
          const o = store.objects.get(hex)
          if (o === undefined) throw new OriginNotFoundError(`memory:${name}/${hex}: not found`)
          return { size: o.length, body: pieces(o.subarray(start, end), store) }
        }
      }, { ...tuning, ...opts })
    },
    async readManifest (hex, opts) {
      check(hex)
      opts?.signal?.throwIfAborted()
      const m = store.objects.get(`${hex}.manifest`)
      if (m !== undefined && m.length > maxManifestBytes) throw new InvalidManifestError(`memory:${name}/${hex}.manifest: larger than ${maxManifestBytes} bytes`)
      return m
    },
    async write (hex, source, opts) {
      check(hex)
      const parts: Uint8Array[] = []
      const hash = createHash('sha256')
      for await (const p of source) {
        opts?.signal?.throwIfAborted()
        hash.update(p)
        parts.push(p)
      }
      opts?.signal?.throwIfAborted()
      if (hash.digest('hex') !== hex) throw new DigestMismatchError(`memory:${name}/${hex}: wrong digest`)
      const all = Buffer.concat(parts)
      store.objects.set(hex, all)
      return { size: all.length }
    },
    async writeManifest (hex, bytes, opts) {
      check(hex)
      opts?.signal?.throwIfAborted()
      store.objects.set(`${hex}.manifest`, bytes)
    }
  }
  return origin
}

export default factory

async function * pieces (bytes: Uint8Array, store: MemoryStore): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < bytes.length; off += 65536) {
    await new Promise(resolve => setImmediate(resolve))
    const fault = store.breakAfter
    const piece = bytes.subarray(off, off + 65536)
    if (fault !== undefined && !fault.fired && off + piece.length > fault.bytes) {
      fault.fired = true
      yield piece.subarray(0, fault.bytes - off)
      throw new OriginError('simulated broken connection', { retryable: true })
    }
    yield piece
  }
}
