import { MAX_PROFILE_ENCODED } from '../chunks/boot-profile.js'
import { ProtocolError } from '../errors.js'
import type { LevelStore } from '../store/level-store.js'
import { deadline } from '../util/deadline.js'
import { silentLogger, type Logger } from '../util/log.js'
import { handle, onlyFrame, request, type FrameProtocol } from './exchange.js'
import type { PeerLimits } from './peer-limits.js'
import { PROTOCOL_PREFIX } from './protocols.js'
import type { AnyLibp2p, PeerId } from './types.js'

/**
 * `boot-profile`: "your boot profile of image {sha256}?" → one frame: byte 1 and the encoded profile
 * (src/chunks/boot-profile.ts), or byte 0 for none. The request is the 64 hex digits. A profile is a
 * hint: the asker checks it against the manifest it fetches by and uses it only to order its fetch.
 */
export const BOOT_PROFILE: FrameProtocol = Object.freeze({
  id: `${PROTOCOL_PREFIX}/boot-profile/1.0.0`,
  maxRequestFrameBytes: 64,
  maxResponseFrameBytes: 1 + MAX_PROFILE_ENCODED
})

const HEX64 = /^[0-9a-f]{64}$/

/** Answers neighbours with the boot profiles this node keeps. */
export async function serveBootProfiles (node: AnyLibp2p, store: LevelStore, options: { limits?: PeerLimits, log?: Logger } = {}): Promise<void> {
  const log = options.log ?? silentLogger
  await handle(node, BOOT_PROFILE, async (frames, send) => {
    const hex = decodeProfileRequest(await onlyFrame(frames, BOOT_PROFILE))
    const raw = await store.bootProfiles.raw(hex)
    await send(raw != null && raw.length <= MAX_PROFILE_ENCODED ? Buffer.concat([Uint8Array.of(1), raw]) : Uint8Array.of(0))
  }, { limits: options.limits, onError: (err, peer) => { log.debug('boot-profile exchange failed', { peer: peer.toString(), err }) } })
}

/**
 * The 64 hex digits of a request.
 * @throws ProtocolError for anything else
 */
export function decodeProfileRequest (frame: Uint8Array): string {
  const hex = Buffer.from(frame).toString('latin1')
  if (!HEX64.test(hex)) throw new ProtocolError(`${BOOT_PROFILE.id}: the request is the image's 64 lower-case hex digits`)
  return hex
}

/** A neighbour's answer: the encoded profile, or undefined for none or a malformed answer. */
export function decodeProfileAnswer (frame: Uint8Array): Uint8Array | undefined {
  if (frame.length < 2 || frame[0] !== 1) return undefined
  return frame.subarray(1)
}

/**
 * Asks the neighbours that speak the protocol (at most `maxPeers`, all at once, each within
 * `timeoutMs`) for their boot profile of image `hex`, and returns the first answer `accept` takes
 * (the caller checks it against its manifest), or undefined. Failures are skipped: a profile is an
 * optimisation.
 */
export async function askBootProfile (node: AnyLibp2p, hex: string, accept: (profile: Uint8Array) => boolean, options: { signal?: AbortSignal, timeoutMs?: number, maxPeers?: number } = {}): Promise<Uint8Array | undefined> {
  const timeoutMs = options.timeoutMs ?? 3000
  const maxPeers = options.maxPeers ?? 8
  const candidates: PeerId[] = []
  for (const peer of node.getPeers()) {
    if (candidates.length >= maxPeers) break
    const protocols = await node.peerStore.get(peer).then(p => p.protocols, () => [] as string[])
    if (protocols.includes(BOOT_PROFILE.id)) candidates.push(peer)
  }
  if (candidates.length === 0) return undefined
  // The first accepted answer ends the asking: the others are aborted.
  const stop = new AbortController()
  const onParent = (): void => { stop.abort(options.signal?.reason) }
  options.signal?.addEventListener('abort', onParent, { once: true })
  const d = deadline(timeoutMs, stop.signal)
  let found: Uint8Array | undefined
  try {
    await Promise.all(candidates.map(async peer => {
      try {
        for await (const frame of request(node, peer, BOOT_PROFILE, [Buffer.from(hex, 'latin1')], { signal: d.signal, timeoutMs })) {
          const p = decodeProfileAnswer(frame)
          if (p != null && found == null && accept(p)) {
            found = p
            stop.abort()
          }
        }
      } catch {
        // An unreachable or confused neighbour, or one cut short: the others may answer.
      }
    }))
  } finally {
    d.clear()
    options.signal?.removeEventListener('abort', onParent)
  }
  return found
}
