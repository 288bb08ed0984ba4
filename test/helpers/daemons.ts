import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ApiClient } from '../../src/api/client.js'
import { parseApiAddress } from '../../src/api/address.js'
import { encodeManifest } from '../../src/chunks/manifest.js'
import { defaultConfig } from '../../src/node/config.js'
import type { NodeConfig } from '../../src/node/options.js'
import { Daemon } from '../../src/daemon/daemon.js'
import { LocalNode } from '../../src/local-node.js'
import { fileOrigin } from '../../src/origin/file-origin.js'
import type { Origin, OriginReadOptions } from '../../src/origin/origin.js'
import { createLogger, silentLogger } from '../../src/util/log.js'
import { tempDir } from './cli.js'
import { streamOf } from './data.js'

interface Teardown { teardown: (fn: () => Promise<void> | void) => void }

export interface TestDaemon {
  daemon: Daemon
  client: ApiClient
  /** `/ip4/127.0.0.1/tcp/…/p2p/…` to bootstrap other nodes from. */
  addr: string
  dir: string
}

/** Starts an in-process daemon on 127.0.0.1 (random ports) in `dir` or a temp data dir; stopped at teardown. */
export async function startDaemon (t: Teardown, options: { bootstrap?: string[], origin?: Origin, config?: Partial<NodeConfig>, dir?: string } = {}): Promise<TestDaemon> {
  const dir = options.dir ?? await tempDir(t)
  const config: NodeConfig = {
    ...defaultConfig(dir),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: options.bootstrap ?? [],
    api: '127.0.0.1:0',
    logLevel: 'warn',
    ...options.config
  }
  const log = process.env.IMGSWARM_TEST_LOG === '1' ? createLogger('debug') : silentLogger
  const daemon = await Daemon.start(config, log, { origin: options.origin })
  t.teardown(async () => { await daemon.stop() })
  const info = daemon.info()
  return { daemon, client: new ApiClient(parseApiAddress(info.api)), addr: info.multiaddrs[0], dir }
}

/** Waits (bounded) until the daemon's health check says ready. */
export async function waitReady (d: TestDaemon, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!d.daemon.isReady) {
    if (Date.now() > until) throw new Error('daemon not ready in time')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** Counts what an origin is asked for: the test's proof of which bytes came from the object store. */
export interface OriginCounts { reads: number, bytes: number, manifests: number, manifestBytes: number, stats: number }

export function countingOrigin (inner: Origin): { origin: Origin, counts: OriginCounts } {
  const counts: OriginCounts = { reads: 0, bytes: 0, manifests: 0, manifestBytes: 0, stats: 0 }
  const origin: Origin = {
    url: inner.url,
    capabilities: inner.capabilities,
    stat: async (hex, o) => { counts.stats++; return await inner.stat(hex, o) },
    read: (hex: string, o?: OriginReadOptions) => ({
      async * [Symbol.asyncIterator] () {
        counts.reads++
        for await (const piece of inner.read(hex, o)) {
          counts.bytes += piece.length
          yield piece
        }
      }
    }),
    readManifest: async (hex, o) => {
      counts.manifests++
      const m = await inner.readManifest(hex, o)
      counts.manifestBytes += m?.length ?? 0
      return m
    },
    write: inner.write?.bind(inner),
    writeManifest: inner.writeManifest?.bind(inner)
  }
  return { origin, counts }
}

/**
 * An origin whose connection resets once it has sent `allowed` bytes in all (every later read fails):
 * a node fetching through it ends with part of the image.
 */
export function breakingOrigin (inner: Origin, allowed: number): Origin {
  const base = countingOrigin(inner).origin
  let left = allowed
  return {
    ...base,
    read: (hex: string, o?: OriginReadOptions) => ({
      async * [Symbol.asyncIterator] () {
        for await (const piece of base.read(hex, o)) {
          if ((left -= piece.length) < 0) throw new Error('origin connection reset')
          yield piece
        }
      }
    })
  }
}

/** A file origin in a temp dir holding the given images with their manifests, as `publish` leaves it. */
export async function originWith (t: Teardown, images: Uint8Array[], options: { manifests?: boolean } = {}): Promise<{ origin: Origin, url: string, refs: string[] }> {
  const dir = await tempDir(t)
  const url = pathToFileURL(join(dir, 'origin')).href
  const origin = fileOrigin(url)
  const scratch = await LocalNode.open()
  const refs: string[] = []
  try {
    for (const bytes of images) {
      const { record } = await scratch.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'test' } })
      const hex = record.ref.slice(7)
      await origin.write!(hex, streamOf(bytes))
      if (options.manifests !== false) await origin.writeManifest!(hex, encodeManifest(await scratch.store.getManifest(record)))
      refs.push(record.ref)
    }
  } finally {
    await scratch.close()
  }
  return { origin, url, refs }
}

/** A metric's value from a daemon's /metrics (NaN when it has no such series). */
export async function metric (client: { send: (m: string, p: string) => Promise<AsyncIterable<unknown>> }, name: string, labels = ''): Promise<number> {
  const res = await client.send('GET', '/metrics')
  let text = ''
  for await (const piece of res) text += String(piece)
  const line = text.split('\n').find(l => l.startsWith(`${name}${labels} `))
  return line == null ? NaN : Number(line.split(' ')[1])
}
