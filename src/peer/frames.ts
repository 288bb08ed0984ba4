import { Uint8ArrayList } from 'uint8arraylist'
import { ImgswarmError, PeerStreamError, PeerTimeoutError, ProtocolError } from '../errors.js'
import type { Stream } from './types.js'

/**
 * Length-prefixed frames over one libp2p 3 stream: an unsigned varint length (as in
 * it-length-prefixed and multiformats), then that many bytes.
 *
 * - Every incoming length is checked against a hard bound as soon as its varint is complete, before
 *   any of the frame is buffered; an oversized or malformed length resets that stream only (with a
 *   {@link ProtocolError}), never the connection.
 * - Reads are bounded in time; a peer that stalls gets its stream reset ({@link PeerTimeoutError}).
 * - Backpressure both ways: `write` waits while the stream's send window is used up, and the reader
 *   pauses the stream (yamux then stops granting window) when it holds two frames nobody has read.
 */

/** How long a read waits for the next whole frame, or a write for the peer to take one. */
export const DEFAULT_FRAME_TIMEOUT_MS = 30_000

/** A writer whose frames all fit the send window yields to the event loop at least this often. */
const YIELD_EVERY_MS = 10

/** Lengths longer than this many varint bytes (56 bits) are refused outright; real bounds need 3 or 4. */
const MAX_VARINT_BYTES = 8

export interface AbortOptions {
  signal?: AbortSignal
}

export interface FrameStreamOptions {
  /** Largest frame accepted from the peer, in bytes (the length prefix not counted). */
  maxFrameBytes: number
  /** Largest frame this side may send. Default `maxFrameBytes`. */
  maxSendFrameBytes?: number
  /**
   * How long each read may wait for the next whole frame, and each write or close for the peer to
   * take our bytes, in ms. Default {@link DEFAULT_FRAME_TIMEOUT_MS}. Must exceed the time the largest
   * frame needs on the slowest link.
   */
  timeoutMs?: number
  /** Names the exchange in error messages, e.g. `/imgswarm/chunks/1.0.0 with 12D3KooW…`. */
  label?: string
}

/** Frames over one stream. Not safe for concurrent reads; concurrent writes are queued in order. */
export interface FrameStream {
  /** The underlying libp2p stream. */
  readonly stream: Stream
  /**
   * The next frame, or `null` when the peer closed its writing side between frames. A connection
   * that closes under the stream is an error (PeerStreamError), not an end; even so, our protocols
   * let the reader tell a complete answer from a cut one (a count, a total size). A frame may be a
   * view into a larger buffer: use its `byteOffset` when wrapping its `buffer`.
   * @throws ProtocolError on an oversized or malformed frame or a stream that ends inside one;
   *   PeerTimeoutError when no whole frame arrives in time; PeerStreamError when the stream is reset
   *   or cut off; the signal's reason when `options.signal` aborts. The stream is reset in each case.
   */
  read: (options?: AbortOptions) => Promise<Uint8Array | null>
  /** Every remaining frame; ends when the peer closes its writing side. */
  [Symbol.asyncIterator]: () => AsyncIterator<Uint8Array>
  /**
   * Sends one frame; resolves once the stream can take more (backpressure).
   * @throws ProtocolError for a frame over `maxSendFrameBytes` (nothing is sent, the stream stays open)
   */
  write: (frame: Uint8Array, options?: AbortOptions) => Promise<void>
  /** Closes our writing side after everything queued has been handed to the connection. */
  closeWrite: (options?: AbortOptions) => Promise<void>
  /** Resets the stream; pending and later reads and writes fail with `err`. */
  abort: (err: Error) => void
  /** True once the peer has closed its writing side (there may still be frames to read). */
  readonly remoteEnded: boolean
}

/** Wraps a libp2p stream. Call it as soon as the stream exists, so that no data event is missed. */
export function frameStream (stream: Stream, options: FrameStreamOptions): FrameStream {
  return new Frames(stream, options)
}

class Frames implements FrameStream {
  readonly stream: Stream
  private readonly maxFrame: number
  private readonly maxSend: number
  private readonly maxHeader: number
  private readonly timeoutMs: number
  private readonly label: string
  /** Pause the stream when this many unread bytes are held: two of the largest frames. */
  private readonly highWater: number
  private readonly buf = new Uint8ArrayList()
  /** Length of the frame whose varint has been consumed from `buf`, until the frame is taken. */
  private nextLength: number | null = null
  private ended = false
  private cutOff: Error | null = null
  private error: Error | null = null
  private wake: (() => void) | null = null
  private reading = false
  private flowScheduled = false
  private writeChain: Promise<void> = Promise.resolve()
  private lastYield = performance.now()

  constructor (stream: Stream, options: FrameStreamOptions) {
    if (!Number.isSafeInteger(options.maxFrameBytes) || options.maxFrameBytes < 0) throw new RangeError(`invalid maxFrameBytes ${options.maxFrameBytes}`)
    this.stream = stream
    this.maxFrame = options.maxFrameBytes
    this.maxSend = options.maxSendFrameBytes ?? options.maxFrameBytes
    this.maxHeader = varintLength(this.maxFrame)
    this.timeoutMs = options.timeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS
    this.label = options.label ?? stream.protocol ?? 'stream'
    this.highWater = 2 * (this.maxFrame + this.maxHeader)

    if (stream.status === 'reset' || stream.status === 'aborted') this.error = new PeerStreamError(`${this.label}: the stream was reset before it was used`)
    if (stream.remoteWriteStatus === 'closed') this.ended = true

    stream.addEventListener('message', evt => {
      if (this.error != null) return
      this.buf.append(evt.data)
      this.parseHeader()
      this.notify()
      this.scheduleFlow()
    })
    stream.addEventListener('remoteCloseWrite', () => {
      this.ended = true
      this.notify()
    })
    stream.addEventListener('close', evt => {
      if (evt.error != null) {
        this.error ??= this.closeError(evt.error, evt.local === true)
      } else if (!this.ended) {
        // A peer that finishes sends its end of stream first ('remoteCloseWrite'). A close without
        // it means the connection went away under us: frames already here are still delivered,
        // then the reader learns that the answer was cut off, never a clean end.
        this.cutOff = new PeerStreamError(`${this.label}: the connection closed before the peer finished sending`)
        this.ended = true
      }
      this.notify()
    })
  }

  get remoteEnded (): boolean { return this.ended }

  async read (options: AbortOptions = {}): Promise<Uint8Array | null> {
    if (this.reading) throw new Error('FrameStream.read called while another read is pending')
    this.reading = true
    let timer: NodeJS.Timeout | undefined
    const onAbort = (): void => {
      this.fail(abortReason(options.signal))
    }
    try {
      options.signal?.throwIfAborted()
      options.signal?.addEventListener('abort', onAbort, { once: true })
      while (true) {
        if (this.error != null) throw this.error
        const frame = this.take()
        if (frame != null) return frame
        if (this.ended && this.stream.readBufferLength === 0) {
          if (this.cutOff != null) {
            this.fail(this.cutOff)
            continue
          }
          if (this.nextLength != null || this.buf.byteLength > 0) {
            this.fail(new ProtocolError(`${this.label}: the stream ended inside a frame`))
            continue
          }
          return null
        }
        timer ??= setTimeout(() => {
          this.fail(new PeerTimeoutError(`${this.label}: no frame from the peer in ${this.timeoutMs} ms`))
        }, this.timeoutMs)
        const woken = new Promise<void>(resolve => { this.wake = resolve })
        // Resuming a paused stream delivers its held bytes at once, which wakes us straight away.
        this.flow()
        await woken
      }
    } finally {
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      this.wake = null
      this.reading = false
    }
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    while (true) {
      const frame = await this.read()
      if (frame == null) return
      yield frame
    }
  }

  async write (frame: Uint8Array, options: AbortOptions = {}): Promise<void> {
    if (frame.byteLength > this.maxSend) {
      throw new ProtocolError(`${this.label}: refusing to send a ${frame.byteLength}-byte frame; the limit is ${this.maxSend}`)
    }
    // Writes run one after another, so frames never interleave and each waits for the previous drain.
    const run = this.writeChain.then(async () => { await this.writeNow(frame, options) })
    this.writeChain = run.catch(() => {})
    await run
  }

  private async writeNow (frame: Uint8Array, options: AbortOptions): Promise<void> {
    if (this.error != null) throw this.error
    options.signal?.throwIfAborted()
    let ready: boolean
    try {
      ready = this.stream.send(new Uint8ArrayList(encodeVarint(frame.byteLength), frame))
    } catch (err) {
      throw this.error ?? new PeerStreamError(`${this.label}: cannot send: ${(err as Error).message}`, { cause: err })
    }
    if (!ready) {
      await this.bounded('the peer did not take our frame', async signal => { await this.drained(signal) }, options)
      this.lastYield = performance.now()
    } else if (performance.now() - this.lastYield > YIELD_EVERY_MS) {
      // A window of small frames can take a long time to fill, and until it does every write
      // resolves at once: let the event loop (other streams, timers, the socket) have a turn.
      await new Promise(resolve => setImmediate(resolve))
      this.lastYield = performance.now()
    }
  }

  /**
   * Waits for the stream's 'drain' event. Not `stream.onDrain()`: in @libp2p/utils 7.4 it keeps the
   * promise of the first drain and hands that settled promise to every later caller, so after one
   * drain it never waits again, and a sender loop then fills memory without yielding to the event loop.
   */
  private async drained (signal: AbortSignal): Promise<void> {
    const stream = this.stream
    if (!stream.writableNeedsDrain) return
    signal.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        stream.removeEventListener('drain', onDrain)
        stream.removeEventListener('close', onClose)
        signal.removeEventListener('abort', onAbort)
      }
      const onDrain = (): void => { done(); resolve() }
      const onClose = (evt: { error?: Error }): void => { done(); reject(evt.error ?? new Error('the stream closed')) }
      const onAbort = (): void => { done(); reject(signal.reason) }
      stream.addEventListener('drain', onDrain)
      stream.addEventListener('close', onClose)
      signal.addEventListener('abort', onAbort)
    })
  }

  async closeWrite (options: AbortOptions = {}): Promise<void> {
    await this.writeChain
    if (this.error != null) throw this.error
    if (this.stream.writeStatus !== 'writable') return
    await this.bounded('the peer did not take our last frames', async signal => { await this.stream.close({ signal }) }, options)
  }

  abort (err: Error): void {
    this.fail(err)
  }

  /** Runs `op` under the frame timeout and the caller's signal; on either, resets the stream. */
  private async bounded (what: string, op: (signal: AbortSignal) => Promise<void>, options: AbortOptions): Promise<void> {
    const timeout = AbortSignal.timeout(this.timeoutMs)
    const signal = options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout
    try {
      await op(signal)
    } catch (err) {
      if (this.error == null) {
        if (timeout.aborted) this.fail(new PeerTimeoutError(`${this.label}: ${what} in ${this.timeoutMs} ms`))
        else if (options.signal?.aborted === true) this.fail(abortReason(options.signal))
        else this.fail(new PeerStreamError(`${this.label}: ${(err as Error).message}`, { cause: err }))
      }
      throw this.error ?? err
    }
  }

  private fail (err: Error): void {
    if (this.error == null) this.error = err
    if (this.stream.status === 'open' || this.stream.status === 'closing') this.stream.abort(this.error)
    this.buf.consume(this.buf.byteLength)
    this.nextLength = null
    this.notify()
  }

  private notify (): void {
    const wake = this.wake
    this.wake = null
    wake?.()
  }

  /** The next whole frame from the buffer, if there is one. */
  private take (): Uint8Array | null {
    if (this.nextLength == null || this.buf.byteLength < this.nextLength) return null
    const n = this.nextLength
    const frame = this.buf.subarray(0, n)
    this.buf.consume(n)
    this.nextLength = null
    this.parseHeader()
    this.scheduleFlow()
    return frame
  }

  /** Consumes the next varint from `buf` if it is complete; resets the stream if it is bad. */
  private parseHeader (): void {
    if (this.nextLength != null || this.error != null) return
    let value = 0
    let scale = 1
    const n = Math.min(this.buf.byteLength, this.maxHeader)
    for (let i = 0; i < n; i++) {
      const b = this.buf.get(i)
      value += (b & 0x7f) * scale
      scale *= 128
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) {
          this.fail(new ProtocolError(`${this.label}: malformed frame length (a varint with a redundant zero byte)`))
          return
        }
        if (value > this.maxFrame) {
          this.fail(new ProtocolError(`${this.label}: the peer announced a ${value}-byte frame; the limit is ${this.maxFrame}`))
          return
        }
        this.buf.consume(i + 1)
        this.nextLength = value
        return
      }
    }
    if (this.buf.byteLength >= this.maxHeader) {
      // Every byte so far had its continuation bit set, so the length is at least 128^maxHeader.
      this.fail(new ProtocolError(`${this.label}: malformed or oversized frame length (more than ${this.maxHeader} varint bytes; the limit is ${this.maxFrame})`))
    }
  }

  /** Flow control runs after the current event, never inside one: `resume()` re-enters our message listener. */
  private scheduleFlow (): void {
    if (this.flowScheduled) return
    this.flowScheduled = true
    queueMicrotask(() => {
      this.flowScheduled = false
      this.flow()
    })
  }

  private flow (): void {
    const status = this.stream.readStatus
    if (this.error != null || (status !== 'readable' && status !== 'paused')) return
    const held = this.buf.byteLength
    if (status === 'readable' && held >= this.highWater) this.stream.pause()
    else if (status === 'paused' && held < this.highWater / 2) this.stream.resume()
  }

  private closeError (err: Error, local: boolean): Error {
    if (err instanceof ImgswarmError || err.name === 'AbortError' || err.name === 'TimeoutError') return err
    return local
      ? new PeerStreamError(`${this.label}: the stream closed: ${err.message}`, { cause: err })
      : new PeerStreamError(`${this.label}: the peer reset the stream`, { cause: err })
  }
}

function abortReason (signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason
  return reason instanceof Error ? reason : new DOMException('The operation was aborted', 'AbortError')
}

/** Bytes of the unsigned varint that encodes `n`. */
export function varintLength (n: number): number {
  let len = 1
  while (n >= 128) { n = Math.floor(n / 128); len++ }
  return Math.min(len, MAX_VARINT_BYTES)
}

/** The unsigned varint (LEB128) encoding of a non-negative safe integer. */
export function encodeVarint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 128) {
    out.push((n % 128) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Uint8Array.from(out)
}
