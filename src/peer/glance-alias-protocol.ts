import { ProtocolError } from '../errors.js'
import type { GlanceAlias } from '../store/glance-aliases.js'
import type { LevelStore } from '../store/level-store.js'
import { silentLogger, type Logger } from '../util/log.js'
import { PROTOCOL_PREFIX } from './protocols.js'
import { handle, onlyFrame, request, type FrameProtocol } from './exchange.js'
import type { PeerLimits } from './peer-limits.js'
import type { AnyLibp2p } from './types.js'

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
    const req = parse(await onlyFrame(frames, GLANCE_ALIAS))
    if (typeof req.id !== 'string' || typeof req.endpoint !== 'string') throw new ProtocolError(`${GLANCE_ALIAS.id}: the request needs "id" and "endpoint" strings`)
    const alias = await store.glanceAliases.get(req.id.slice(0, 64))
    const record = alias != null && alias.endpoint === req.endpoint ? await store.getRecord(alias.hex) : undefined
    await send(encode(alias != null && record?.state === 'available' ? answerOf(alias) : {}))
  }, { limits: options.limits, onError: (err, peer) => { log.debug('glance-alias exchange failed', { peer: peer.toString(), err }) } })
}

function answerOf (a: GlanceAlias): Omit<GlanceAliasClaim, 'peer'> {
  return { hex: a.hex, size: a.size, osHashAlgo: a.osHashAlgo, osHashValue: a.osHashValue, checksum: a.checksum }
}

/**
 * Asks the connected neighbours that speak the protocol, one after the other (at most `maxPeers`,
 * each within `timeoutMs`), and returns the well-formed claims. Failures are skipped: asking is an
 * optimisation, Glance remains the fallback.
 */
export async function askGlanceAlias (node: AnyLibp2p, endpoint: string, id: string, options: { signal?: AbortSignal, timeoutMs?: number, maxPeers?: number } = {}): Promise<GlanceAliasClaim[]> {
  const claims: GlanceAliasClaim[] = []
  let asked = 0
  for (const peer of node.getPeers()) {
    if (asked >= (options.maxPeers ?? 8)) break
    options.signal?.throwIfAborted()
    const protocols = await node.peerStore.get(peer).then(p => p.protocols, () => [] as string[])
    if (!protocols.includes(GLANCE_ALIAS.id)) continue
    asked++
    const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs ?? 3000), ...options.signal != null ? [options.signal] : []])
    try {
      for await (const frame of request(node, peer, GLANCE_ALIAS, [encode({ endpoint, id })], { signal, timeoutMs: options.timeoutMs ?? 3000 })) {
        const a = parse(frame)
        if (typeof a.hex === 'string' && HEX64.test(a.hex) && Number.isSafeInteger(a.size) && (a.size as number) >= 0) {
          claims.push({
            peer: peer.toString(),
            hex: a.hex,
            size: a.size as number,
            ...typeof a.osHashAlgo === 'string' ? { osHashAlgo: a.osHashAlgo } : {},
            ...typeof a.osHashValue === 'string' ? { osHashValue: a.osHashValue } : {},
            ...typeof a.checksum === 'string' ? { checksum: a.checksum } : {}
          })
        }
      }
    } catch {
      // An unreachable or confused neighbour: ask the next one.
    }
  }
  return claims
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
