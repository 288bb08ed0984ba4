import { createRequire } from 'node:module'
import { preSharedKey } from '@libp2p/pnet'
import { PeerConfigError } from '../errors.js'

/**
 * `@libp2p/pnet` (private networks, a pre-shared key) made safe for bulk transfer.
 *
 * pnet encrypts with the `xsalsa20` package, whose WebAssembly memory is one per process, capped at
 * 1000 pages (62.5 MiB), and grown on demand. Every cipher context caches a view of that memory;
 * when one context grows it, every other context's view goes stale, and the next call on a stale
 * context grows the memory again by the whole size of its input. Two contexts per connection take
 * turns, so the memory ratchets up until `WebAssembly.Memory.grow(): Maximum memory size exceeded`
 * kills the connection: measured here after ~63 MiB on one stream. pnet also hands its cipher the
 * whole send queue of a connection in one call, which can exceed the cap on its own.
 *
 * Two measures stop both: the WASM memory is grown once, before any connection exists, to
 * {@link XSALSA20_RESERVE_BYTES}, so contexts made afterwards never see it grow; and each protected
 * connection encrypts at most {@link PNET_MAX_WRITE_BYTES} per call, far below the reserve.
 */

/** Largest piece pnet encrypts in one call. */
const PNET_MAX_WRITE_BYTES = 1024 * 1024

/**
 * WASM memory reserved up front (its pages are touched once, so this adds to resident memory
 * when pnet is used). Besides one write it holds 64 bytes of state for every cipher context the
 * process ever makes (pnet never frees them: two per connection), so it lasts ~50,000 connections.
 */
const XSALSA20_RESERVE_BYTES = 8 * 1024 * 1024

type Protector = ReturnType<ReturnType<typeof preSharedKey>>
type ProtectorFactory = (components: any) => Protector

let reserved = false

function reserveCipherMemory (): void {
  if (reserved) return
  // The same module instance pnet loads: resolved from pnet's own location.
  const require = createRequire(import.meta.resolve('@libp2p/pnet'))
  const xsalsa20 = require('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => { update: (input: Uint8Array) => Uint8Array, finalize: () => void }
  const probe = xsalsa20(new Uint8Array(24), new Uint8Array(32))
  probe.update(new Uint8Array(XSALSA20_RESERVE_BYTES))
  probe.finalize()
  reserved = true
}

/**
 * pnet's connection protector for `swarmKey` (go-ipfs `swarm.key` format), with the measures above.
 * @throws PeerConfigError when the key cannot be parsed
 */
export function privateNetwork (swarmKey: Uint8Array): ProtectorFactory {
  const factory = preSharedKey({ psk: swarmKey })
  try {
    factory()
  } catch (err) {
    throw new PeerConfigError(`invalid swarm key (expected "/key/swarm/psk/1.0.0/\\n/base16/\\n<64 hex digits>"): ${(err as Error).message}`, { cause: err })
  }
  reserveCipherMemory()
  return () => {
    const inner = factory()
    return {
      [Symbol.toStringTag]: '@imgswarm/pnet',
      async protect (connection, options) {
        const boxed = await inner.protect(connection, options)
        // The protected connection is a libp2p AbstractMessageStream: this bounds each cipher call.
        ;(boxed as unknown as { maxMessageSize?: number }).maxMessageSize = PNET_MAX_WRITE_BYTES
        return boxed
      }
    }
  }
}
