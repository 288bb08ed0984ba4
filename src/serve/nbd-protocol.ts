/*
 * The read-only subset of the NBD protocol that imgswarm serves (the "fixed newstyle" handshake of
 * https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md): constants and the encoders and
 * decoders of its fixed-size frames. Pure: no sockets here.
 */

export const NBD_MAGIC = 0x4e42444d41474943n // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n
export const REQUEST_MAGIC = 0x25609513
export const SIMPLE_REPLY_MAGIC = 0x67446698
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef

/** Handshake flags the server sends. */
export const FLAG_FIXED_NEWSTYLE = 1
export const FLAG_NO_ZEROES = 2
/** Client flags it may send back; any other bit ends the handshake. */
export const CLIENT_FLAG_FIXED_NEWSTYLE = 1
export const CLIENT_FLAG_NO_ZEROES = 2

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8
} as const

const ERR = 0x80000000
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: (1 | ERR) >>> 0,
  ERR_POLICY: (2 | ERR) >>> 0,
  ERR_INVALID: (3 | ERR) >>> 0,
  ERR_UNKNOWN: (6 | ERR) >>> 0,
  ERR_SHUTDOWN: (7 | ERR) >>> 0,
  ERR_TOO_BIG: (9 | ERR) >>> 0
} as const

export const INFO_EXPORT = 0
export const INFO_BLOCK_SIZE = 3

/** Transmission flags: read-only, flush accepted (a no-op), and safe for several connections at once. */
export const TRANSMISSION_FLAGS = 1 /* HAS_FLAGS */ | 2 /* READ_ONLY */ | 4 /* SEND_FLUSH */ | 256 /* CAN_MULTI_CONN */

export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const

export const ERRNO = { EPERM: 1, EIO: 5, EINVAL: 22, ESHUTDOWN: 108 } as const

/** Largest option payload read whole (export names are at most 4096 bytes by the protocol). */
export const MAX_OPTION_BYTES = 4096 + 8
/** Option payloads larger than this are not even skipped: the connection is closed. */
export const MAX_SKIPPED_OPTION_BYTES = 1024 * 1024
/** Largest read served in one request; qemu asks for at most 32 MiB. */
export const MAX_READ_BYTES = 32 * 1024 * 1024
/** Block sizes advertised with NBD_INFO_BLOCK_SIZE: any byte, 4 KiB preferred, reads up to MAX_READ_BYTES. */
export const BLOCK_SIZES = { min: 1, preferred: 4096, max: MAX_READ_BYTES }

/** The server's first words: magic, IHAVEOPT, handshake flags. */
export function greeting (): Buffer {
  const b = Buffer.alloc(18)
  b.writeBigUInt64BE(NBD_MAGIC, 0)
  b.writeBigUInt64BE(IHAVEOPT, 8)
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16)
  return b
}

/** The 16-byte header of a client's option: IHAVEOPT, option, payload length. */
export interface OptionHeader { magic: bigint, option: number, length: number }

export function decodeOptionHeader (b: Buffer): OptionHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12) }
}

export function optionReply (option: number, type: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.alloc(20 + data.length)
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0)
  b.writeUInt32BE(option >>> 0, 8)
  b.writeUInt32BE(type >>> 0, 12)
  b.writeUInt32BE(data.length, 16)
  b.set(data, 20)
  return b
}

/** An error reply with a short human-readable message, as the protocol allows. */
export function optionError (option: number, type: number, message: string): Buffer {
  return optionReply(option, type, Buffer.from(message.slice(0, 1024), 'utf8'))
}

/** NBD_REP_SERVER for NBD_OPT_LIST: the name's length, then the name. */
export function serverReply (name: string): Buffer {
  const n = Buffer.from(name, 'utf8')
  const d = Buffer.alloc(4 + n.length)
  d.writeUInt32BE(n.length, 0)
  n.copy(d, 4)
  return optionReply(OPT.LIST, REP.SERVER, d)
}

export function infoExport (option: number, size: number): Buffer {
  const d = Buffer.alloc(12)
  d.writeUInt16BE(INFO_EXPORT, 0)
  d.writeBigUInt64BE(BigInt(size), 2)
  d.writeUInt16BE(TRANSMISSION_FLAGS, 10)
  return optionReply(option, REP.INFO, d)
}

export function infoBlockSize (option: number): Buffer {
  const d = Buffer.alloc(14)
  d.writeUInt16BE(INFO_BLOCK_SIZE, 0)
  d.writeUInt32BE(BLOCK_SIZES.min, 2)
  d.writeUInt32BE(BLOCK_SIZES.preferred, 6)
  d.writeUInt32BE(BLOCK_SIZES.max, 10)
  return optionReply(option, REP.INFO, d)
}

/** The old-style answer to NBD_OPT_EXPORT_NAME: size and flags (no option reply header). */
export function exportNameReply (size: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134)
  b.writeBigUInt64BE(BigInt(size), 0)
  b.writeUInt16BE(TRANSMISSION_FLAGS, 8)
  return b
}

/** The payload of NBD_OPT_INFO and NBD_OPT_GO: an export name and the info types asked for. */
export interface InfoRequest { name: string, infos: number[] }

/** Decodes an INFO/GO payload, or returns undefined when its lengths do not add up. */
export function decodeInfoRequest (d: Buffer): InfoRequest | undefined {
  if (d.length < 6) return undefined
  const nameLength = d.readUInt32BE(0)
  if (nameLength > d.length - 6) return undefined
  const count = d.readUInt16BE(4 + nameLength)
  if (d.length !== 6 + nameLength + 2 * count) return undefined
  const infos: number[] = []
  for (let i = 0; i < count; i++) infos.push(d.readUInt16BE(6 + nameLength + 2 * i))
  return { name: d.subarray(4, 4 + nameLength).toString('utf8'), infos }
}

/** A 28-byte transmission request. Offsets past 2^53 are kept exact enough to be refused as out of range. */
export interface Request { magic: number, flags: number, type: number, handle: Buffer, offset: number, length: number }

export const REQUEST_BYTES = 28

export function decodeRequest (b: Buffer): Request {
  return {
    magic: b.readUInt32BE(0),
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: Buffer.from(b.subarray(8, 16)),
    offset: Number(b.readBigUInt64BE(16)),
    length: b.readUInt32BE(24)
  }
}

export function simpleReply (error: number, handle: Uint8Array): Buffer {
  const b = Buffer.alloc(16)
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0)
  b.writeUInt32BE(error, 4)
  b.set(handle, 8)
  return b
}

/** Structured reply chunk types and the flag of the last chunk. */
export const REPLY_FLAG_DONE = 1
export const REPLY_TYPE = { NONE: 0, OFFSET_DATA: 1, ERROR: 32769 } as const

/**
 * One structured reply chunk's header. qemu needs structured replies to read the tail of an image
 * whose size is not a multiple of 512: with simple replies it reads a whole sector there.
 */
export function structuredHeader (type: number, handle: Uint8Array, length: number, done = true): Buffer {
  const b = Buffer.alloc(20)
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0)
  b.writeUInt16BE(done ? REPLY_FLAG_DONE : 0, 4)
  b.writeUInt16BE(type, 6)
  b.set(handle, 8)
  b.writeUInt32BE(length, 16)
  return b
}

/** A structured reply: data at `offset` (a read), nothing (a done command), or an error with a message. */
export function structuredReply (error: number, handle: Uint8Array, offset: number, data?: Uint8Array, message = ''): Buffer[] {
  if (error !== 0) {
    const m = Buffer.from(message.slice(0, 512), 'utf8')
    const p = Buffer.alloc(6 + m.length)
    p.writeUInt32BE(error, 0)
    p.writeUInt16BE(m.length, 4)
    m.copy(p, 6)
    return [structuredHeader(REPLY_TYPE.ERROR, handle, p.length), p]
  }
  if (data == null) return [structuredHeader(REPLY_TYPE.NONE, handle, 0)]
  const o = Buffer.alloc(8)
  o.writeBigUInt64BE(BigInt(offset))
  return [structuredHeader(REPLY_TYPE.OFFSET_DATA, handle, 8 + data.length), o, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]
}
