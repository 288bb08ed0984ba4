import { PeerUnreachableError, ProtocolError, ProtocolUnsupportedError } from '../errors.js'
import { DEFAULT_FRAME_TIMEOUT_MS, frameStream, type AbortOptions } from './frames.js'
import type { PeerLimits } from './peer-limits.js'
import type { AnyLibp2p, PeerId, Stream } from './types.js'

/**
 * Request/response over frames, with the rule that **the requester always speaks first**: a
 * requester opens a stream, sends its request frames and closes its writing side; the responder
 * reads them and answers with any number of frames, then closes. A responder never writes before
 * it has read a request frame (libp2p 3 streams can lose a race where the responder writes and
 * closes before the dialer starts reading; speaking second makes it impossible by construction).
 * One exchange per stream: streams are cheap under yamux, and a reset then costs one exchange only.
 */

/** A wire protocol as the framing layer sees it: an id and a frame bound for each direction. */
export interface FrameProtocol {
  /** Protocol id, `/imgswarm/<name>/<semver>`. */
  readonly id: string
  /** Largest frame a requester may send. */
  readonly maxRequestFrameBytes: number
  /** Largest frame a responder may send. */
  readonly maxResponseFrameBytes: number
}

/** Who to ask: a peer ID the node knows addresses for, or addresses ending in `/p2p/<id>`. */
export type DialTarget = Parameters<AnyLibp2p['dialProtocol']>[0]

/** libp2p's default for outbound streams of one protocol on one connection. */
export const DEFAULT_MAX_OUTBOUND_STREAMS = 64

/**
 * How many streams of one protocol a peer may have open to us at once. Enough for a fetch window of
 * several batches from each peer; past it, the peer's extra streams are reset instead of queued, so
 * one peer cannot take every handler and the memory behind them.
 */
export const DEFAULT_MAX_STREAMS_PER_PEER = 16

export interface RequestOptions extends AbortOptions {
  /** Per-frame timeout for reads and writes, in ms. Default {@link DEFAULT_FRAME_TIMEOUT_MS}. */
  timeoutMs?: number
  /** Most outbound streams of this protocol on one connection, when this node does not {@link handle} it. */
  maxOutboundStreams?: number
}

/**
 * Opens a stream to `peer`, sends `frames` (concurrently with reading, so a long request cannot
 * deadlock against a long answer), closes the writing side, and yields the response frames until
 * the responder closes. Leaving the loop early, or any failure, resets the stream.
 *
 * @example
 * for await (const frame of request(node, peerId, CHUNKS, [encodeChunksRequest({ digests })])) {
 *   const msg = decodeChunksResponse(frame)
 * }
 *
 * @throws PeerUnreachableError when no connection can be had; ProtocolUnsupportedError when the peer
 *   does not speak `protocol.id`; any error of `FrameStream`'s read and write
 */
export async function * request (
  node: AnyLibp2p,
  peer: DialTarget,
  protocol: FrameProtocol,
  frames: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  options: RequestOptions = {}
): AsyncGenerator<Uint8Array, void, undefined> {
  const label = `${protocol.id} with ${describe(peer)}`
  const stream = await openStream(node, peer, protocol.id, label, options)
  const fs = frameStream(stream, {
    maxFrameBytes: protocol.maxResponseFrameBytes,
    maxSendFrameBytes: protocol.maxRequestFrameBytes,
    timeoutMs: options.timeoutMs,
    label
  })
  let done = false
  const sending = (async () => {
    for await (const frame of frames) await fs.write(frame, options)
    await fs.closeWrite(options)
  })()
  // A failed send resets the stream, so the reads below fail too; this keeps the rejection handled.
  sending.catch(err => { fs.abort(err as Error) })
  try {
    while (true) {
      const frame = await fs.read(options)
      if (frame == null) break
      yield frame
    }
    await sending
    done = true
  } finally {
    if (!done) fs.abort(new ProtocolError(`${label}: the requester abandoned the exchange`))
  }
}

/** What a handler learns about the exchange besides its frames. */
export interface HandlerContext {
  /** The requesting peer. */
  peer: PeerId
  /** Aborted when the stream is reset or closes, so the handler can stop its own work. */
  signal: AbortSignal
  /** The raw stream, for diagnostics. */
  stream: Stream
}

/**
 * Answers one exchange. `frames` yields the request frames until the requester closes its side;
 * `send` answers with a frame and resolves when the stream can take more. Sending before the first
 * request frame has been read throws a ProtocolError. When the handler returns, the stream is closed;
 * when it throws, the stream is reset.
 */
export type FrameHandler = (frames: AsyncIterable<Uint8Array>, send: (frame: Uint8Array) => Promise<void>, context: HandlerContext) => Promise<void>

export interface HandleOptions {
  /** Most concurrent streams of this protocol from one peer. Default {@link DEFAULT_MAX_STREAMS_PER_PEER}. */
  maxStreamsPerPeer?: number
  /** Most outbound streams of this protocol on one connection. Default {@link DEFAULT_MAX_OUTBOUND_STREAMS}. */
  maxOutboundStreams?: number
  /** Per-frame timeout for reads and writes, in ms. Default {@link DEFAULT_FRAME_TIMEOUT_MS}. */
  timeoutMs?: number
  /** Told of every exchange that ended in an error (for metrics and logs); the stream is already reset. */
  onError?: (err: Error, peer: PeerId) => void
  /** The node's per-peer request rate, shared by all its protocols: a stream over it is refused. */
  limits?: PeerLimits
  /**
   * The protocol's "busy" answer, sent (after the request) to a peer over its rate, so that it can
   * tell refusal from failure. Without it the stream is reset.
   */
  refusal?: (message: string) => Uint8Array
}

/**
 * Registers `handler` for `protocol.id` on `node`. Each inbound stream gets its own call; streams
 * beyond `maxStreamsPerPeer` from one peer are reset at once. Remove it with `node.unhandle(id)`.
 */
export async function handle (node: AnyLibp2p, protocol: FrameProtocol, handler: FrameHandler, options: HandleOptions = {}): Promise<void> {
  const limit = options.maxStreamsPerPeer ?? DEFAULT_MAX_STREAMS_PER_PEER
  const active = new Map<string, number>()
  await node.handle(protocol.id, async (stream, connection) => {
    const peer = connection.remotePeer
    const key = peer.toString()
    const label = `${protocol.id} from ${key}`
    const fs = frameStream(stream, {
      maxFrameBytes: protocol.maxRequestFrameBytes,
      maxSendFrameBytes: protocol.maxResponseFrameBytes,
      timeoutMs: options.timeoutMs,
      label
    })
    const count = active.get(key) ?? 0
    if (count >= limit) {
      const err = new ProtocolError(`${label}: the peer already has ${count} streams open; the limit is ${limit}`)
      fs.abort(err)
      options.onError?.(err, peer)
      return
    }
    if (options.limits != null && !options.limits.admitRequest(key)) {
      const err = new ProtocolError(`${label}: the peer is over its rate of ${options.limits.init.requestsPerSecond} requests a second`)
      options.onError?.(err, peer)
      if (options.refusal == null) {
        fs.abort(err)
        return
      }
      try {
        // Requester speaks first: take its request, then say no.
        while (await fs.read() != null) ;
        await fs.write(options.refusal(err.message))
        await fs.closeWrite()
      } catch (e) {
        fs.abort(e as Error)
      }
      return
    }
    active.set(key, count + 1)
    const controller = new AbortController()
    const onClose = (): void => { controller.abort(new ProtocolError(`${label}: the stream closed`)) }
    stream.addEventListener('close', onClose)
    try {
      let received = 0
      const frames: AsyncIterable<Uint8Array> = {
        async * [Symbol.asyncIterator] () {
          while (true) {
            const frame = await fs.read()
            if (frame == null) return
            received++
            yield frame
          }
        }
      }
      const send = async (frame: Uint8Array): Promise<void> => {
        if (received === 0) throw new ProtocolError(`${label}: a responder may not send before it has read a request frame`)
        await fs.write(frame)
      }
      await handler(frames, send, { peer, signal: controller.signal, stream })
      await fs.closeWrite()
      // Read what the requester may still send (normally nothing, then its close), so that the
      // stream closes fully and frees its place in libp2p's per-connection stream count.
      while (await fs.read() != null) ;
    } catch (err) {
      fs.abort(err as Error)
      options.onError?.(err as Error, peer)
    } finally {
      stream.removeEventListener('close', onClose)
      controller.abort()
      const left = (active.get(key) ?? 1) - 1
      if (left === 0) active.delete(key)
      else active.set(key, left)
    }
  }, {
    // libp2p's own count is per connection and includes streams whose handler has finished but
    // whose requester has not closed yet; it is a backstop, ours above is the limit that reports.
    maxInboundStreams: 2 * limit,
    maxOutboundStreams: options.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS
  })
}

/**
 * The single request frame of an exchange, for handlers of one-request protocols (all of ours).
 * Waits for the requester to close its side, so a second frame is caught.
 * @throws ProtocolError when the requester sent no frame or more than one
 */
export async function onlyFrame (frames: AsyncIterable<Uint8Array>, protocol: FrameProtocol): Promise<Uint8Array> {
  let first: Uint8Array | undefined
  for await (const frame of frames) {
    if (first !== undefined) throw new ProtocolError(`${protocol.id}: a request is one frame; the requester sent more`)
    first = frame
  }
  if (first === undefined) throw new ProtocolError(`${protocol.id}: the requester closed without a request`)
  return first
}

async function openStream (node: AnyLibp2p, peer: DialTarget, id: string, label: string, options: RequestOptions): Promise<Stream> {
  const open = async (force: boolean): Promise<Stream> => await node.dialProtocol(peer, id, {
    signal: options.signal,
    maxOutboundStreams: options.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
    force
  })
  try {
    try {
      return await open(false)
    } catch (err) {
      // The connection we reused was closing (the peer hung up and we have not noticed yet): dial afresh once.
      if ((err as Error).name !== 'ConnectionClosedError' || options.signal?.aborted === true) throw err
      return await open(true)
    }
  } catch (err) {
    const e = err as Error
    if (options.signal?.aborted === true) throw err
    if (e.name === 'UnsupportedProtocolError') throw new ProtocolUnsupportedError(`${label}: the peer does not speak ${id}`, { cause: err })
    // Our own per-connection stream limit: a bug in the caller's windowing, not the peer's fault.
    if (e.name === 'TooManyOutboundProtocolStreamsError') throw err
    throw new PeerUnreachableError(`${label}: cannot open a stream: ${e.message}`, { cause: err })
  }
}

function describe (peer: DialTarget): string {
  return Array.isArray(peer) ? peer.map(String).join(',') : peer.toString()
}

export { DEFAULT_FRAME_TIMEOUT_MS }
