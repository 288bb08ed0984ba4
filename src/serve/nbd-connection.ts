import type { Socket } from 'node:net'
import { ImgswarmError } from '../errors.js'
import type { Logger } from '../util/log.js'
import type { Request } from './nbd-protocol.js'
import {
  CLIENT_FLAG_FIXED_NEWSTYLE, CLIENT_FLAG_NO_ZEROES, CMD, ERRNO, IHAVEOPT, INFO_BLOCK_SIZE, MAX_OPTION_BYTES, MAX_READ_BYTES,
  MAX_SKIPPED_OPTION_BYTES, OPT, REP, REQUEST_BYTES, REQUEST_MAGIC, decodeInfoRequest, decodeOptionHeader, decodeRequest,
  exportNameReply, greeting, infoBlockSize, infoExport, optionError, optionReply, serverReply, simpleReply, structuredReply
} from './nbd-protocol.js'
import { SocketClosed, SocketReader } from './socket-reader.js'

/** One opened export: an image's bytes, read-only. */
export interface NbdExport {
  readonly size: number
  /** Exactly `length` bytes at `offset` (the caller has checked the range). */
  read: (offset: number, length: number, signal: AbortSignal) => Promise<Uint8Array>
  /** The connection is done with it. */
  close: () => void
}

/** What the server exports: images by any form of their ref. */
export interface NbdExports {
  /** Opens an export by name; throws ImageNotFoundError (or another of our errors) to refuse it. */
  open: (name: string, signal: AbortSignal) => Promise<NbdExport>
  /** Names for NBD_OPT_LIST (bounded by the implementation). */
  list: () => Promise<string[]>
}

export interface ConnectionLimits {
  /** Options a client may send before it picks an export. */
  maxOptions: number
  /** Requests being served at once on one connection; reading pauses above it. */
  maxInflight: number
  /** How long the handshake (options, and opening an export) may take. */
  handshakeMs: number
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({ maxOptions: 64, maxInflight: 16, handshakeMs: 120_000 })

/** Ends the connection without another word: the protocol says to close on these. */
class HangUp extends Error {}

/**
 * Serves one NBD connection: the fixed newstyle handshake, then read requests until the client
 * disconnects. Nothing the client sends ends anything but this connection.
 */
export async function serveNbdConnection (socket: Socket, exports: NbdExports, log: Logger, limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS): Promise<void> {
  const reader = new SocketReader(socket)
  const controller = new AbortController()
  socket.once('close', () => { controller.abort(new SocketClosed('connection closed')) })
  let opened: NbdExport | undefined
  const timer = setTimeout(() => { if (opened == null) socket.destroy() }, limits.handshakeMs)
  try {
    socket.write(greeting())
    const clientFlags = (await reader.read(4)).readUInt32BE(0)
    if ((clientFlags & ~(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES)) !== 0 || (clientFlags & CLIENT_FLAG_FIXED_NEWSTYLE) === 0) throw new HangUp()
    const noZeroes = (clientFlags & CLIENT_FLAG_NO_ZEROES) !== 0
    const session = { structured: false }
    opened = await negotiate(socket, reader, exports, noZeroes, controller.signal, limits, session)
    clearTimeout(timer)
    if (opened != null) await transmit(socket, reader, opened, controller.signal, limits, log, session.structured)
  } catch (err) {
    if (!(err instanceof HangUp || err instanceof SocketClosed || controller.signal.aborted)) log.warn('NBD connection failed', { err })
    else log.debug('NBD connection closed', { why: (err as Error).message })
  } finally {
    clearTimeout(timer)
    opened?.close()
    socket.end()
    setTimeout(() => socket.destroy(), 1000).unref()
  }
}

/** Option haggling. Returns the export to serve, or undefined when the client aborted. */
async function negotiate (socket: Socket, reader: SocketReader, exports: NbdExports, noZeroes: boolean, signal: AbortSignal, limits: ConnectionLimits, session: { structured: boolean }): Promise<NbdExport | undefined> {
  for (let n = 0; n < limits.maxOptions; n++) {
    const h = decodeOptionHeader(await reader.read(16))
    if (h.magic !== IHAVEOPT) throw new HangUp()
    if (h.length > MAX_OPTION_BYTES) {
      if (h.length > MAX_SKIPPED_OPTION_BYTES || h.option === OPT.EXPORT_NAME) throw new HangUp()
      await reader.skip(h.length)
      socket.write(optionError(h.option, REP.ERR_TOO_BIG, `option payload of ${h.length} bytes is over ${MAX_OPTION_BYTES}`))
      continue
    }
    const data = await reader.read(h.length)
    switch (h.option) {
      case OPT.EXPORT_NAME: {
        // No way to report an error here but closing.
        const e = await exports.open(data.toString('utf8'), signal).catch(() => undefined)
        if (e == null) throw new HangUp()
        socket.write(exportNameReply(e.size, noZeroes))
        return e
      }
      case OPT.ABORT:
        socket.write(optionReply(h.option, REP.ACK))
        return undefined
      case OPT.LIST: {
        if (h.length !== 0) { socket.write(optionError(h.option, REP.ERR_INVALID, 'NBD_OPT_LIST takes no data')); break }
        for (const name of await exports.list()) socket.write(serverReply(name))
        socket.write(optionReply(h.option, REP.ACK))
        break
      }
      case OPT.INFO:
      case OPT.GO: {
        const req = decodeInfoRequest(data)
        if (req == null) { socket.write(optionError(h.option, REP.ERR_INVALID, 'malformed NBD_OPT_INFO/GO request')); break }
        let e: NbdExport
        try {
          e = await exports.open(req.name, signal)
        } catch (err) {
          if (signal.aborted) throw err
          const known = err instanceof ImgswarmError
          socket.write(optionError(h.option, known ? REP.ERR_UNKNOWN : REP.ERR_INVALID, known ? err.message : 'cannot open the export'))
          break
        }
        socket.write(infoExport(h.option, e.size))
        if (req.infos.includes(INFO_BLOCK_SIZE)) socket.write(infoBlockSize(h.option))
        socket.write(optionReply(h.option, REP.ACK))
        if (h.option === OPT.GO) return e
        e.close()
        break
      }
      case OPT.STRUCTURED_REPLY:
        if (h.length !== 0) { socket.write(optionError(h.option, REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data')); break }
        session.structured = true
        socket.write(optionReply(h.option, REP.ACK))
        break
      default:
        // STARTTLS, meta contexts and anything newer: not supported, say so.
        socket.write(optionError(h.option, REP.ERR_UNSUP, 'not supported by imgswarm'))
    }
  }
  socket.write(optionError(0, REP.ERR_POLICY, `more than ${limits.maxOptions} options`))
  throw new HangUp()
}

/** Serves requests: reads in parallel (up to maxInflight), replies in whatever order they finish. */
async function transmit (socket: Socket, reader: SocketReader, e: NbdExport, signal: AbortSignal, limits: ConnectionLimits, log: Logger, structured: boolean): Promise<void> {
  const running = new Set<Promise<void>>()
  const reply = (error: number, r: Request, data?: Uint8Array, message = ''): void => {
    if (socket.destroyed) return
    // Header and data are queued together, so replies of concurrent reads never interleave.
    if (structured) {
      for (const b of structuredReply(error, r.handle, r.offset, data, message)) socket.write(b)
      return
    }
    socket.write(simpleReply(error, r.handle))
    if (data != null) socket.write(data)
  }
  try {
    for (;;) {
      while (running.size >= limits.maxInflight) await Promise.race(running)
      const r = decodeRequest(await reader.read(REQUEST_BYTES))
      if (r.magic !== REQUEST_MAGIC) throw new HangUp()
      switch (r.type) {
        case CMD.READ: {
          if (r.length === 0 || r.length > MAX_READ_BYTES || r.offset + r.length > e.size) {
            reply(ERRNO.EINVAL, r, undefined, `a read of ${r.length} bytes at ${r.offset}: reads are 1 byte to 32 MiB inside the image's ${e.size} bytes`)
            break
          }
          const p: Promise<void> = e.read(r.offset, r.length, signal).then(
            bytes => { reply(0, r, bytes) },
            err => {
              if (!signal.aborted) log.warn('NBD read failed', { offset: r.offset, length: r.length, err })
              reply(ERRNO.EIO, r, undefined, (err as Error)?.message ?? 'read failed')
            }
          ).finally(() => { running.delete(p) })
          running.add(p)
          break
        }
        case CMD.WRITE:
          // The payload must be consumed to stay in step; a write too large to skip ends the connection.
          if (r.length > MAX_READ_BYTES) throw new HangUp()
          await reader.skip(r.length)
          reply(ERRNO.EPERM, r, undefined, 'imgswarm exports are read-only')
          break
        case CMD.TRIM:
        case CMD.WRITE_ZEROES:
          reply(ERRNO.EPERM, r, undefined, 'imgswarm exports are read-only')
          break
        case CMD.FLUSH:
          await Promise.all(running)
          reply(0, r)
          break
        case CMD.DISC:
          await Promise.all(running)
          return
        default:
          reply(ERRNO.EINVAL, r, undefined, `command ${r.type} is not supported`)
      }
    }
  } finally {
    if (!signal.aborted) await Promise.all(running)
  }
}
