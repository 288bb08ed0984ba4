import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { ForbiddenError, UnauthorizedError } from '../errors.js'
import { uidInGroup } from '../util/unix-accounts.js'
import { tcpSocketOwner } from './socket-owner.js'

/** Who may use the local API without a token, and the token for everyone else. */
export interface AccessPolicy {
  /** The daemon's own uid: granted, like root. */
  ownUid: number
  /** Members of this group are granted (`--api-group`): the compute service's user. */
  groupGid?: number
  /** The token that lets any other caller in (`Authorization: Bearer …`). */
  token?: string
  /**
   * The API listens beyond loopback: every request needs the token, also those that arrive from
   * 127.0.0.1, since a kernel grant cannot be checked for a remote caller.
   */
  exposed: boolean
}

/** What the connection came in on: the kernel checked a unix socket's mode; TCP needs the caller's uid. */
export type ListenerKind = 'unix' | 'tcp'

/** Routes that carry no image bytes and change nothing: any local caller may read them. */
const OPEN_ROUTES = new Set(['GET /healthz', 'GET /metrics', 'GET /v1/node', 'HEAD /healthz'])

/**
 * Decides whether a request may go on. On a unix socket the kernel already checked the socket's owner
 * and mode (0660, owner and `--api-group`), so whoever connected is granted. On loopback TCP the caller
 * is the uid owning the connecting socket (/proc/net/tcp): root, the daemon's user and members of the
 * API group are granted; anyone else needs the token. The answer is kept per connection. The listener's
 * kind decides, not the socket: a TCP peer that resets its connection leaves no readable address, and
 * that must not read as a unix socket.
 */
export class ApiAccess {
  private readonly policy: AccessPolicy
  private readonly granted = new WeakMap<Socket, Promise<boolean>>()

  constructor (policy: AccessPolicy) {
    this.policy = policy
  }

  /** Throws UnauthorizedError or ForbiddenError unless the request may go on. */
  async check (req: IncomingMessage, pathname: string, listener: ListenerKind): Promise<void> {
    if (OPEN_ROUTES.has(`${req.method ?? ''} ${pathname}`)) return
    const presented = bearerToken(req)
    if (presented != null) {
      if (this.policy.token == null || !sameSecret(presented, this.policy.token)) throw new ForbiddenError('the API token is wrong')
      return
    }
    if (!this.policy.exposed && await this.kernelGrant(req.socket, listener)) return
    throw new UnauthorizedError(this.policy.exposed
      ? 'this API listens beyond loopback: every request needs its token (Authorization: Bearer …, or IMGSWARM_API_TOKEN for the CLI)'
      : 'no grant: run as root, the daemon\'s user or a member of its API group, or give the token (IMGSWARM_API_TOKEN; it is in <data>/api.token)')
  }

  private async kernelGrant (socket: Socket, listener: ListenerKind): Promise<boolean> {
    if (listener === 'unix') return true
    let grant = this.granted.get(socket)
    if (grant == null) {
      grant = this.uidGranted(socket)
      this.granted.set(socket, grant)
    }
    return await grant
  }

  private async uidGranted (socket: Socket): Promise<boolean> {
    const uid = await tcpSocketOwner(socket)
    if (uid == null) return false
    if (uid === 0 || uid === this.policy.ownUid) return true
    return this.policy.groupGid != null && await uidInGroup(uid, this.policy.groupGid)
  }
}

function bearerToken (req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  return m?.[1]
}

function sameSecret (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}
