import { randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { DHT_PROTOCOL, type PeerNode } from '../../src/peer/libp2p-node.js'
import { imageCid } from '../../src/peer/dht.js'
import { encodeVarint } from '../../src/peer/frames.js'
import type { Stream } from '../../src/peer/types.js'

/*
 * A hostile DHT client: ADD_PROVIDER messages written straight onto kad-dht streams, as fast as the
 * target takes them, each for a fresh CID and carrying as many made-up addresses as asked. Written by
 * hand (protobuf field numbers of kad-dht 16's dht.proto) so that nothing on our side throttles it.
 */

/** kad-dht's MessageType.ADD_PROVIDER. */
const ADD_PROVIDER = 2

function field (tag: number, bytes: Uint8Array): Uint8Array {
  return Buffer.concat([encodeVarint(tag), encodeVarint(bytes.length), bytes])
}

/** One ADD_PROVIDER message (without its length prefix) naming `sender` as the provider of `cid`. */
export function addProviderMessage (sender: PeerNode, cidBytes: Uint8Array, addrs: Uint8Array[]): Uint8Array {
  const peer = Buffer.concat([field(0x0a, sender.peerId.toMultihash().bytes), ...addrs.map(a => field(0x12, a))])
  return Buffer.concat([Uint8Array.of(0x08, ADD_PROVIDER), field(0x12, cidBytes), field(0x4a, peer)])
}

export interface SpamOptions {
  /** ADD_PROVIDER messages in all. */
  messages: number
  /** Parallel streams to spread them over. Default 4. */
  streams?: number
  /** Made-up addresses per message. Default 1. */
  addrsPerMessage?: number
  /** New addresses in every message (the peer store's list for the sender grows), or the same ones. Default true. */
  freshAddrs?: boolean
  /** Give up after this long. Default 60 s. */
  timeoutMs?: number
}

/**
 * Sends `messages` ADD_PROVIDER messages from `sender` to `target` over kad-dht streams, each for a
 * random image CID. A stream the target resets is replaced, up to the message count; resolves with
 * how many messages were written and how many streams the target cut.
 */
export async function spamProviders (sender: PeerNode, target: string, options: SpamOptions): Promise<{ sent: number, resets: number }> {
  const streams = options.streams ?? 4
  const addrs = options.addrsPerMessage ?? 1
  const fresh = options.freshAddrs ?? true
  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  let next = 0
  let resets = 0
  const ma = multiaddr(target)
  const worker = async (): Promise<void> => {
    let stream: Stream | undefined
    while (next < options.messages && Date.now() < deadline) {
      if (stream == null || stream.status !== 'open' || stream.writeStatus !== 'writable') {
        if (stream != null) resets++
        stream = await sender.dialProtocol(ma, DHT_PROTOCOL, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined)
        if (stream == null) { await new Promise(resolve => setTimeout(resolve, 50)); continue }
      }
      const i = next++
      const k = fresh ? i : 0
      const made = Array.from({ length: addrs }, (_, j) => multiaddr(`/ip4/10.${(k >> 8) & 255}.${k & 255}.${j & 255}/tcp/${1024 + (j >> 8)}`).bytes)
      const msg = addProviderMessage(sender, imageCid(randomBytes(32).toString('hex')).bytes, made)
      try {
        if (!stream.send(Buffer.concat([encodeVarint(msg.length), msg]))) await stream.onDrain({ signal: AbortSignal.timeout(5_000) })
      } catch {
        stream = undefined
        resets++
      }
    }
    await stream?.close({ signal: AbortSignal.timeout(5_000) }).catch(() => {})
  }
  await Promise.all(Array.from({ length: streams }, worker))
  return { sent: Math.min(next, options.messages), resets }
}
