import type { Socket } from 'node:net'

/** The peer closed the connection (or it was destroyed) before the bytes asked for arrived. */
export class SocketClosed extends Error {
  override name = 'SocketClosed'
}

/**
 * Reads exact byte counts from a socket. It buffers at most `maxBuffered` bytes beyond what is asked
 * for (the socket is paused above that), so a client that sends faster than the server reads holds
 * the server's memory to a bound.
 */
export class SocketReader {
  private readonly parts: Buffer[] = []
  private buffered = 0
  private closed = false
  private waiter?: () => void

  constructor (private readonly socket: Socket, private readonly maxBuffered = 1024 * 1024) {
    socket.on('data', (b: Buffer) => {
      this.parts.push(b)
      this.buffered += b.length
      if (this.buffered > this.maxBuffered) socket.pause()
      this.wake()
    })
    const end = (): void => { this.closed = true; this.wake() }
    socket.once('end', end)
    socket.once('close', end)
    socket.once('error', end)
  }

  private wake (): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  private async more (): Promise<void> {
    if (this.closed) throw new SocketClosed('connection closed')
    this.socket.resume()
    await new Promise<void>(resolve => { this.waiter = resolve })
  }

  /** Exactly `n` bytes (n at most a few MiB: callers bound it). */
  async read (n: number): Promise<Buffer> {
    while (this.buffered < n) await this.more()
    const out = Buffer.allocUnsafe(n)
    let got = 0
    while (got < n) {
      const p = this.parts[0]
      const take = Math.min(p.length, n - got)
      p.copy(out, got, 0, take)
      got += take
      if (take === p.length) this.parts.shift()
      else this.parts[0] = p.subarray(take)
    }
    this.buffered -= n
    if (this.buffered <= this.maxBuffered) this.socket.resume()
    return out
  }

  /** Discards exactly `n` bytes without keeping them. */
  async skip (n: number): Promise<void> {
    let left = n
    while (left > 0) {
      if (this.buffered === 0) await this.more()
      while (left > 0 && this.parts.length > 0) {
        const p = this.parts[0]
        const take = Math.min(p.length, left)
        left -= take
        this.buffered -= take
        if (take === p.length) this.parts.shift()
        else this.parts[0] = p.subarray(take)
      }
    }
    if (this.buffered <= this.maxBuffered) this.socket.resume()
  }
}
