import { connect, type Socket } from 'node:net'

/*
 * A minimal NBD client over a raw socket, written from the protocol document, to check the server's
 * bytes on the wire (qemu checks the rest).
 */

export const IHAVEOPT = Buffer.from('IHAVEOPT')

export class RawNbd {
  private buf = Buffer.alloc(0)
  private closed = false
  private waiter?: () => void

  private constructor (readonly socket: Socket) {
    socket.on('data', b => { this.buf = Buffer.concat([this.buf, b]); this.waiter?.() })
    socket.on('close', () => { this.closed = true; this.waiter?.() })
    socket.on('error', () => {})
  }

  static async connect (path: string): Promise<RawNbd> {
    const s = connect(path)
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
    return new RawNbd(s)
  }

  /** Exactly n bytes, or undefined when the server closed first or `ms` passed. */
  async read (n: number, ms = 5000): Promise<Buffer | undefined> {
    const until = Date.now() + ms
    while (this.buf.length < n) {
      if (this.closed || Date.now() > until) return undefined
      await new Promise<void>(resolve => { const t = setTimeout(resolve, 50); this.waiter = () => { clearTimeout(t); resolve() } })
    }
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  /** Whether the server closed the connection within `ms`. */
  async closedWithin (ms: number): Promise<boolean> {
    const until = Date.now() + ms
    while (!this.closed && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 20))
    return this.closed
  }

  write (b: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(b)
  }

  /** Reads the greeting and sends the client flags (fixed newstyle, no zeroes). */
  async handshake (): Promise<{ magic: string, opt: string, flags: number }> {
    const g = await this.read(18)
    if (g == null) throw new Error('no greeting')
    this.write(u32(3))
    return { magic: g.subarray(0, 8).toString('latin1'), opt: g.subarray(8, 16).toString('latin1'), flags: g.readUInt16BE(16) }
  }

  option (option: number, data: Uint8Array = Buffer.alloc(0)): void {
    this.write(Buffer.concat([IHAVEOPT, u32(option), u32(data.length), data]))
  }

  /** One option reply: option, type, data. */
  async reply (ms = 5000): Promise<{ option: number, type: number, data: Buffer } | undefined> {
    const h = await this.read(20, ms)
    if (h == null) return undefined
    const data = await this.read(h.readUInt32BE(16))
    if (data == null) return undefined
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data }
  }

  request (type: number, handle: bigint, offset: bigint, length: number, payload?: Uint8Array): void {
    const b = Buffer.alloc(28)
    b.writeUInt32BE(0x25609513, 0)
    b.writeUInt16BE(0, 4)
    b.writeUInt16BE(type, 6)
    b.writeBigUInt64BE(handle, 8)
    b.writeBigUInt64BE(offset, 16)
    b.writeUInt32BE(length, 24)
    this.write(payload != null ? Buffer.concat([b, payload]) : b)
  }

  /** A simple reply's header: error and handle. */
  async simpleReply (): Promise<{ magic: number, error: number, handle: bigint } | undefined> {
    const h = await this.read(16)
    if (h == null) return undefined
    return { magic: h.readUInt32BE(0), error: h.readUInt32BE(4), handle: h.readBigUInt64BE(8) }
  }

  close (): void {
    this.socket.destroy()
  }
}

export function u32 (n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

/** The payload of NBD_OPT_INFO / NBD_OPT_GO for `name`, asking for the given info types. */
export function infoPayload (name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name)
  const b = Buffer.alloc(6 + n.length + 2 * infos.length)
  b.writeUInt32BE(n.length, 0)
  n.copy(b, 4)
  b.writeUInt16BE(infos.length, 4 + n.length)
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i))
  return b
}
