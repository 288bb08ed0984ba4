import type { Libp2p, Libp2pOptions } from 'libp2p'

/*
 * libp2p's types, taken from `libp2p` itself. The tree holds two versions of @libp2p/interface (the
 * project pins 3.2.5; libp2p 3.3 and most of its modules bring 3.3.0, whose MessageStream has an
 * extra member), so types imported from '@libp2p/interface' directly do not fit libp2p's. Deriving
 * them from libp2p's own signatures keeps them in step with whatever version libp2p resolves.
 */

/** Any libp2p node, whatever its services. */
export type AnyLibp2p = Libp2p<any>
export type PeerId = AnyLibp2p['peerId']
export type Stream = Awaited<ReturnType<AnyLibp2p['dialProtocol']>>
export type Connection = Awaited<ReturnType<AnyLibp2p['dial']>>
export type PrivateKey = NonNullable<Libp2pOptions['privateKey']>
export type ConnectionGater = NonNullable<Libp2pOptions['connectionGater']>
export type StreamHandlerOptions = NonNullable<Parameters<AnyLibp2p['handle']>[2]>
