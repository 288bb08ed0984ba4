import { readFile } from 'node:fs/promises'
import { isIPv4 } from 'node:net'

/**
 * The uid that owns the client end of a TCP connection made on this machine, as the kernel lists it in
 * /proc/net/tcp and /proc/net/tcp6 (the namespace of this process): the row whose local address is
 * the connection's remote end and whose remote address is our end. Undefined when there is no such
 * row (the client is on another machine, or already gone).
 */
export async function tcpSocketOwner (socket: SocketEnds): Promise<number | undefined> {
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const uid = ownerInTable(await readFile(file, 'utf8').catch(() => ''), socket)
    if (uid !== undefined) return uid
  }
  return undefined
}

/** The two ends of a connection, as node:net names them on the server's side. */
export interface SocketEnds { remoteAddress?: string, remotePort?: number, localAddress?: string, localPort?: number }

/** The uid of the client end of `socket` in one table in the form of /proc/net/tcp or tcp6 (header line first). */
export function ownerInTable (table: string, socket: SocketEnds): number | undefined {
  const { remoteAddress, remotePort, localAddress, localPort } = socket
  if (remoteAddress == null || remotePort == null || localAddress == null || localPort == null) return undefined
  const client = `${normalise(remoteAddress)}:${remotePort}`
  const server = `${normalise(localAddress)}:${localPort}`
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 8) continue
    if (decodeEndpoint(f[1]) === client && decodeEndpoint(f[2]) === server) return Number(f[7])
  }
  return undefined
}

/** IPv4-mapped IPv6 (`::ffff:127.0.0.1`) as plain IPv4; IPv6 in full lower-case form. */
function normalise (address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped != null) return mapped[1]
  if (isIPv4(address)) return address
  return expandIpv6(address)
}

function expandIpv6 (address: string): string {
  const [head, tail] = address.toLowerCase().split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail == null || tail === '' ? [] : tail.split(':')
  const groups = tail == null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  return groups.map(g => g.padStart(4, '0')).join(':')
}

/**
 * `0100007F:1F90` (IPv4) or 32 hex digits (IPv6), each 32-bit word in the host's byte order (little
 * endian on the machines imgswarm runs on), then the port in hex.
 */
function decodeEndpoint (text: string): string {
  const [hex, port] = text.split(':')
  if (hex == null || port == null) return ''
  const words = hex.match(/.{8}/g) ?? []
  const bytes = words.flatMap(w => [w.slice(6, 8), w.slice(4, 6), w.slice(2, 4), w.slice(0, 2)].map(b => parseInt(b, 16)))
  const p = parseInt(port, 16)
  if (bytes.length === 4) return `${bytes.join('.')}:${p}`
  if (bytes.length !== 16) return ''
  if (bytes.slice(0, 10).every(b => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `${bytes.slice(12).join('.')}:${p}`
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16).padStart(4, '0'))
  return `${groups.join(':')}:${p}`
}
