import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import type { PeerId } from '@libp2p/interface'
import { ProtocolError } from '../errors.js'
import type { GlanceAlias } from '../store/glance-aliases.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { PROTOCOL_PREFIX } from './protocols.js'
import { handle, onlyFrame, request, type FrameProtocol } from './exchange.js'
import type { PeerLimits } from './peer-limits.js'
import type { AnyLibp2p } from './types.js'
import { deadline, withDeadline } from '../util/deadline.js'

/**
 * `glance-alias`: "which sha256 is Glance image {id} of endpoint {endpoint}?" → the answering peer's
 * verified alias, or nothing. Both frames are small JSON objects. The answer is a claim: the asker
 * checks it against Glance's metadata, and the image it names against Glance's own hash, before
 * it records the alias or serves a byte under the id (src/fetch/glance-images.ts).
 */
export const GLANCE_ALIAS: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/glance-alias/1.0.0`,
  maxRequestFrameBytes: 4096,
  maxResponseFrameBytes: 4096
})

/** A peer's claim about a Glance id. */
export interface GlanceAliasClaim {
  peer: string
  hex: string
  size: number
  osHashAlgo?: string
  osHashValue?: string
  checksum?: string
}

const HEX64 = /^[0-9a-f]{64}$/

/** Answers neighbours' questions about Glance ids with the aliases of images this node holds available. */
export async function serveGlanceAliases (node: AnyLibp2p, store: LevelStore, options: { limits?: PeerLimits, log?: Logger } = {}): Promise<void> {
  const log = options.log ?? silentLogger
  await handle(node, GLANCE_ALIAS, async (frames, send) => {
    const req = decodeAliasRequest(await onlyFrame(frames, GLANCE_ALIAS))
    const alias = await store.glanceAliases.get(req.id.slice(0, 64))
    const record = alias != null && alias.endpoint === req.endpoint ? await store.getRecord(alias.hex) : undefined
    await send(encode(alias != null && record?.state === 'available' ? answerOf(alias) : {}))
  }, { limits: options.limits, onError: (err, peer) => { log.debug('glance-alias exchange failed', { peer: peer.toString(), err }) } })
}

function answerOf (a: GlanceAlias): Omit<GlanceAliasClaim, 'peer'> {
  return { hex: a.hex, size: a.size, osHashAlgo: a.osHashAlgo, osHashValue: a.osHashValue, checksum: a.checksum }
}

/**
 * The DHT key under which the holders of a Glance id's alias are found: the CIDv1 (raw, sha2-256) of
 * the endpoint and the id, so that two clouds' Glance services never share keys.
 */
export function glanceAliasCid (endpoint: string, id: string): CID {
  return CID.createV1(raw.code, Digest.create(sha256.code, createHash('sha256').update(`imgswarm glance-alias\n${endpoint}\n${id}`).digest()))
}

/**
 * Tells the DHT which Glance ids of `endpoint` this node can answer for: each alias as it is
 * recorded, and those of available images by a sweep every 10 s until the DHT took them (at start it
 * may have no peers yet); kad-dht re-provides them before they expire.
 */
export class GlanceAliasAnnouncer {
  private readonly announced = new Set<string>()
  private timer?: NodeJS.Timeout

  constructor (private readonly node: AnyLibp2p, private readonly store: LevelStore, private readonly endpoint: string, private readonly log: Logger = silentLogger) {}

  start (): void {
    void this.sweep()
    this.timer = setInterval(() => { void this.sweep() }, 10_000)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  async announce (id: string): Promise<void> {
    if (this.announced.has(id)) return
    this.announced.add(id)
    await withDeadline(5000, undefined, async signal => { await this.node.contentRouting.provide(glanceAliasCid(this.endpoint, id), { signal }) }).catch((err: unknown) => {
      this.announced.delete(id) // the next sweep tries again
      this.log.debug('DHT announce of a Glance alias failed (no DHT peers yet?)', { id, err })
    })
  }

  private async sweep (): Promise<void> {
    try {
      for (const alias of await this.store.glanceAliases.all()) {
        if (alias.endpoint !== this.endpoint || this.announced.has(alias.id)) continue
        if ((await this.store.getRecord(alias.hex))?.state === 'available') await this.announce(alias.id)
      }
    } catch (err) {
      this.log.debug('DHT announce sweep of Glance aliases failed', { err })
    }
  }
}

/**
 * Asks the connected neighbours that speak the protocol, one after the other (at most `maxPeers`,
 * each within `timeoutMs`), and returns the well-formed claims; when none answers, asks the DHT for
 * the nodes that announced the id ({@link glanceAliasCid}) and asks those. Failures are skipped:
 * asking is an optimisation, Glance remains the fallback.
 */
export async function askGlanceAlias (node: AnyLibp2p, endpoint: string, id: string, options: { signal?: AbortSignal, timeoutMs?: number, maxPeers?: number } = {}): Promise<GlanceAliasClaim[]> {
  const timeoutMs = options.timeoutMs ?? 3000
  const maxPeers = options.maxPeers ?? 8
  const asked = new Set<string>()
  const claims: GlanceAliasClaim[] = []
  const ask = async (peer: PeerId): Promise<void> => {
    asked.add(peer.toString())
    const d = deadline(timeoutMs, options.signal)
    try {
      for await (const frame of request(node, peer, GLANCE_ALIAS, [encode({ endpoint, id })], { signal: d.signal, timeoutMs })) {
        const claim = decodeAliasAnswer(frame, peer.toString())
        if (claim != null) claims.push(claim)
      }
    } catch {
      // An unreachable or confused neighbour: ask the next one.
    } finally {
      d.clear()
    }
  }
  for (const peer of node.getPeers()) {
    if (asked.size >= maxPeers) break
    options.signal?.throwIfAborted()
    const protocols = await node.peerStore.get(peer).then(p => p.protocols, () => [] as string[])
    if (protocols.includes(GLANCE_ALIAS.id)) await ask(peer)
  }
  if (claims.length > 0) return claims
  // Nodes that are not neighbours: the DHT names those that announced the id.
  // With no connection the DHT cannot answer: do not wait out its bound for nothing.
  if (node.getConnections().length === 0) return claims
  const d = deadline(timeoutMs + 2000, options.signal)
  try {
    let found = 0
    for await (const provider of node.contentRouting.findProviders(glanceAliasCid(endpoint, id), { signal: d.signal })) {
      if (provider.id.equals(node.peerId) || asked.has(provider.id.toString())) continue
      if (provider.multiaddrs.length > 0) await node.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => {})
      await ask(provider.id)
      if (claims.length > 0 || ++found >= maxPeers) break
    }
  } catch {
    // No DHT peers, or the lookup timed out: Glance serves.
  } finally {
    d.clear()
  }
  return claims
}

/**
 * A neighbour's question: the Glance id and endpoint, both strings.
 * @throws ProtocolError for a frame that is not such a JSON object
 */
export function decodeAliasRequest (frame: Uint8Array): { id: string, endpoint: string } {
  const req = parse(frame)
  if (typeof req.id !== 'string' || typeof req.endpoint !== 'string') throw new ProtocolError(`${GLANCE_ALIAS.id}: the request needs "id" and "endpoint" strings`)
  return { id: req.id, endpoint: req.endpoint }
}

/**
 * A neighbour's answer as a claim: undefined for "don't know" or a claim without a sha256 and a size;
 * optional fields that are not strings are left out.
 * @throws ProtocolError for a frame that is not a JSON object
 */
export function decodeAliasAnswer (frame: Uint8Array, peer: string): GlanceAliasClaim | undefined {
  const a = parse(frame)
  if (typeof a.hex !== 'string' || !HEX64.test(a.hex) || !Number.isSafeInteger(a.size) || (a.size as number) < 0) return undefined
  return {
    peer,
    hex: a.hex,
    size: a.size as number,
    ...typeof a.osHashAlgo === 'string' ? { osHashAlgo: a.osHashAlgo } : {},
    ...typeof a.osHashValue === 'string' ? { osHashValue: a.osHashValue } : {},
    ...typeof a.checksum === 'string' ? { checksum: a.checksum } : {}
  }
}

function encode (value: object): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8')
}

function parse (frame: Uint8Array): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(Buffer.from(frame).toString('utf8'))
    if (v != null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {}
  throw new ProtocolError(`${GLANCE_ALIAS.id}: a frame that is not a JSON object`)
}
