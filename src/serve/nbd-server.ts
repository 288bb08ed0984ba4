import { chmod, chown, unlink } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { tcpSocketOwner } from '../api/socket-owner.js'
import { UsageError } from '../errors.js'
import type { Logger } from '../util/log.js'
import { uidInGroup } from '../util/unix-accounts.js'
import { serveNbdConnection, type ConnectionLimits, type NbdExports } from './nbd-connection.js'

/** Where the NBD server listens. */
export type NbdAddress =
  | { kind: 'unix', path: string }
  | { kind: 'tcp', host: string, port: number }

/** The socket a node serves NBD on when `--nbd` is not given. */
export const NBD_SOCKET = 'nbd.sock'

/**
 * Parses `--nbd`: `unix:PATH`, `HOST:PORT` (loopback only: NBD has no authentication of its own, so
 * a caller is granted by the kernel's word on who owns the connecting socket), or `off`. Absent, the
 * unix socket `<data>/nbd.sock`.
 */
export function parseNbdAddress (text: string | undefined, dataDir: string): NbdAddress | undefined {
  if (text == null) return { kind: 'unix', path: join(dataDir, NBD_SOCKET) }
  const s = text.trim()
  if (s === 'off') return undefined
  if (s.startsWith('unix:')) {
    if (s.length === 5) throw new UsageError(`invalid --nbd "${text}": unix: needs a socket path`)
    return { kind: 'unix', path: s.slice(5) }
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/[\]]*):(\d{1,5})$/.exec(s)
  if (m == null || Number(m[2]) > 65535) throw new UsageError(`invalid --nbd "${text}": expected unix:PATH, HOST:PORT or off`)
  const host = m[1] === '' ? '127.0.0.1' : m[1].replace(/^\[|\]$/g, '')
  if (!(host === '::1' || host === 'localhost' || /^127\./.test(host))) {
    throw new UsageError(`--nbd ${text}: NBD is served on loopback or a unix socket only (it has no authentication; a remote caller's grant cannot be checked)`)
  }
  return { kind: 'tcp', host, port: Number(m[2]) }
}

export function formatNbdAddress (a: NbdAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
}

/** The URI qemu takes for an export: `nbd+unix:///NAME?socket=PATH` or `nbd://HOST:PORT/NAME`. */
export function nbdUri (a: NbdAddress, name: string): string {
  return a.kind === 'unix' ? `nbd+unix:///${name}?socket=${a.path}` : `nbd://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/${name}`
}

export interface NbdServerOptions {
  log: Logger
  /** The unix socket's group (as the API's, `--api-group`): its members may connect (mode 0660). */
  socketGid?: number
  /** Over TCP: the uids granted besides root and this process's own. */
  groupGid?: number
  /** Connections open at once; more are closed at once. Default 64. */
  maxConnections?: number
  limits?: ConnectionLimits
}

export interface NbdServer {
  address: NbdAddress
  close: () => Promise<void>
}

/**
 * Serves the node's images as read-only NBD exports. On a unix socket the kernel checks the socket's
 * mode (0660, owner and group) as for the local API; over loopback TCP the uid owning the client's
 * socket must be root, the daemon's user or in the group.
 */
export async function startNbdServer (exports: NbdExports, address: NbdAddress, options: NbdServerOptions): Promise<NbdServer> {
  const maxConnections = options.maxConnections ?? 64
  const sockets = new Set<Socket>()
  const ownUid = process.getuid?.() ?? 0
  const granted = async (socket: Socket): Promise<boolean> => {
    if (address.kind === 'unix') return true
    const uid = await tcpSocketOwner(socket)
    if (uid == null) return false
    if (uid === 0 || uid === ownUid) return true
    return options.groupGid != null && await uidInGroup(uid, options.groupGid)
  }
  const server: Server = createServer(socket => {
    socket.on('error', () => {})
    if (sockets.size >= maxConnections) {
      options.log.warn('NBD connection refused: too many open', { max: maxConnections })
      socket.destroy()
      return
    }
    sockets.add(socket)
    socket.once('close', () => { sockets.delete(socket) })
    void (async () => {
      if (!await granted(socket).catch(() => false)) {
        options.log.warn('NBD connection refused: the caller is not granted', { from: `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}` })
        socket.destroy()
        return
      }
      socket.setNoDelay(true)
      await serveNbdConnection(socket, exports, options.log, options.limits)
    })().catch(err => {
      options.log.warn('NBD connection failed', { err })
      socket.destroy()
    })
  })
  if (address.kind === 'unix') await unlink(address.path).catch(() => {})
  await new Promise<void>((resolve, reject) => {
    server.once('error', err => { reject(new UsageError(`cannot serve NBD on ${formatNbdAddress(address)}: ${err.message}`)) })
    if (address.kind === 'unix') {
      // Made 0600 by the umask while bound, then opened to its group: nobody else gets in between.
      const previous = process.umask(0o177)
      try {
        server.listen(address.path, resolve)
      } finally {
        process.umask(previous)
      }
    } else {
      server.listen(address.port, address.host, resolve)
    }
  })
  let bound = address
  if (address.kind === 'unix') {
    if (options.socketGid != null) await chown(address.path, -1, options.socketGid)
    await chmod(address.path, 0o660)
  } else {
    const a = server.address()
    if (a != null && typeof a === 'object') bound = { ...address, port: a.port }
  }
  return {
    address: bound,
    close: async () => {
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await closed
      if (address.kind === 'unix') await unlink(address.path).catch(() => {})
    }
  }
}
