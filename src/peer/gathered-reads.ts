import type { Socket } from 'node:net'

/*
 * Socket reads gathered into fewer, larger ones on slow links.
 *
 * A TCP socket on a link slower than the CPU hands Node each packet or two as its own read (a few KiB
 * at 100 Mbit/s), and every read then passes on its own through libp2p's stream events, pnet's cipher
 * and noise's frame decoder. A 48 MiB fetch over a 100 Mbit/s link cost the receiver 4× the
 * main-thread CPU of the same fetch over an unshaped one (docs/benchmarks.md §16). After a small read
 * the socket stops reading for a few milliseconds, so the kernel gathers the packets that follow and
 * Node reads them in one go (up to 64 KiB a read). A fast link fills each read and never waits.
 */

/** A read smaller than this pauses the socket. */
export const SMALL_READ_BYTES = 16 * 1024
/** How long the socket pauses: at 100 Mbit/s the kernel gathers ~37 KiB meanwhile; a reply waits at most this. */
export const GATHER_MS = 3

/** The part of libp2p's connection over a TCP socket used here (`@libp2p/tcp`'s MultiaddrConnection). */
export interface SocketConnection {
  socket?: unknown
  /** 'readable' unless libp2p itself paused or closed the connection for reading. */
  readStatus?: string
}

/**
 * Gathers the reads of a libp2p TCP connection as described above. A connection that is not over a
 * net.Socket (another transport) is left as it is; returns whether the socket is now gathered.
 */
export function gatherReads (connection: SocketConnection, options: { smallBytes?: number, waitMs?: number } = {}): boolean {
  const socket = connection.socket as Socket | undefined
  if (socket == null || typeof socket.pause !== 'function' || typeof socket.on !== 'function') return false
  const small = options.smallBytes ?? SMALL_READ_BYTES
  const waitMs = options.waitMs ?? GATHER_MS
  let timer: NodeJS.Timeout | undefined
  const resume = (): void => {
    timer = undefined
    // Paused by libp2p meanwhile (backpressure) or closed: its own resume, if any, restarts reading.
    if (!socket.destroyed && connection.readStatus === 'readable') socket.resume()
  }
  socket.on('data', (buf: Buffer) => {
    if (buf.byteLength >= small || timer != null || socket.destroyed) return
    socket.pause()
    timer = setTimeout(resume, waitMs)
  })
  socket.once('close', () => { clearTimeout(timer) })
  return true
}

/** libp2p's connection protector, as far as it is used here (pnet's is one). */
export interface ConnectionProtector {
  protect: (connection: any, options?: any) => Promise<any>
}

/**
 * A connection protector that gathers each new connection's reads, then hands it to `inner` (pnet,
 * when the node has a swarm key): libp2p gives its protector every raw connection before encryption.
 */
export function readGathering (inner?: (components: any) => ConnectionProtector): (components: any) => ConnectionProtector {
  return components => {
    const protector = inner?.(components)
    return {
      [Symbol.toStringTag]: '@imgswarm/gathered-reads',
      async protect (connection: SocketConnection, options?: unknown) {
        gatherReads(connection)
        return protector != null ? await protector.protect(connection, options) : connection
      }
    } as ConnectionProtector
  }
}
