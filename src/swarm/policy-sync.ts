import { ProtocolError } from '../errors.js'
import { handle, onlyFrame, request } from '../peer/exchange.js'
import type { PeerLimits } from '../peer/peer-limits.js'
import type { AnyLibp2p, PeerId } from '../peer/types.js'
import { silentLogger, type Logger } from '../util/log.js'
import { livePeers } from './live-peers.js'
import { POLICY, decodePolicies, encodePolicies } from './policy-protocol.js'
import type { ReplicaPolicies } from './replica-policies.js'
import { withDeadline } from '../util/deadline.js'

/** How long one policy exchange may take. */
const SYNC_TIMEOUT_MS = 10_000

/** Changes are pushed after this quiet time, so a burst of settings (or merges) makes one round. */
const PUSH_DELAY_MS = 50

export interface PolicySyncOptions {
  node: AnyLibp2p
  policies: ReplicaPolicies
  /** Anti-entropy period: one random live peer is synchronised with this often (± 25 %). */
  intervalMs: number
  log?: Logger
  /** Whether a peer belongs to the cluster: policies are exchanged only with members. Default: every peer. */
  member?: (peer: PeerId) => boolean
  limits?: PeerLimits
}

/**
 * Spreads the replica policies without a central service: every change (set here, or adopted from a
 * peer) is pushed to every connected imgswarm peer; a newly identified peer is synchronised with at
 * once (so a node that joins, or comes back, learns the table); and one random peer is synchronised
 * with every period, which repairs whatever a lost push missed.
 */
export class PolicySync {
  private readonly opts: PolicySyncOptions
  private readonly log: Logger
  private timer?: NodeJS.Timeout
  private pushTimer?: NodeJS.Timeout
  private stopped = false
  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId, protocols: string[] }>): void => {
    if (evt.detail.protocols.includes(POLICY.id)) void this.syncWith(evt.detail.peerId)
  }

  private readonly onChanged = (): void => { this.schedulePush() }

  constructor (options: PolicySyncOptions) {
    this.opts = options
    this.log = options.log ?? silentLogger
  }

  async start (): Promise<void> {
    const { node, policies } = this.opts
    const member = this.opts.member ?? (() => true)
    await handle(node, POLICY, async (frames, send, ctx) => {
      const theirs = decodePolicies(await onlyFrame(frames, POLICY))
      // The policy frame has no error kind: a stranger's exchange is reset, its table neither adopted nor answered.
      if (!member(ctx.peer)) throw new ProtocolError(`${POLICY.id}: ${ctx.peer.toString()} is not a member of this cluster; its replica policies are refused`)
      await policies.merge(theirs, ctx.peer.toString())
      await send(encodePolicies(policies.all()))
    }, {
      maxStreamsPerPeer: 2,
      limits: this.opts.limits,
      onError: (err, peer) => {
        if (!member(peer)) this.log.warn('replica policies refused: the peer is not a member of this cluster', { peer: peer.toString() })
        else this.log.debug('policy exchange failed', { peer: peer.toString(), err })
      }
    })
    node.addEventListener('peer:identify', this.onIdentify as any)
    policies.on('changed', this.onChanged)
    this.tick()
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    clearTimeout(this.pushTimer)
    this.opts.node.removeEventListener('peer:identify', this.onIdentify as any)
    this.opts.policies.off('changed', this.onChanged)
  }

  /** One exchange with `peer`: both sides end with the newer of each policy. */
  async syncWith (peer: PeerId): Promise<void> {
    if (this.stopped || this.opts.member?.(peer) === false) return
    const { node, policies } = this.opts
    try {
      const answer = await withDeadline(SYNC_TIMEOUT_MS, undefined, async signal => {
        let first: Uint8Array | undefined
        for await (const frame of request(node, peer, POLICY, [encodePolicies(policies.all())], { signal })) first ??= frame
        return first
      })
      if (answer == null) throw new Error('the peer answered nothing')
      const adopted = await policies.merge(decodePolicies(answer), peer.toString())
      if (adopted.length > 0) this.log.info('replica policies learnt from a peer', { peer: peer.toString(), images: adopted.map(p => ({ image: p.image, min: p.min })) })
    } catch (err) {
      this.log.debug('policy sync failed', { peer: peer.toString(), err })
    }
  }

  /** Synchronises with every live peer now. */
  async syncAll (): Promise<void> {
    const peers = await livePeers(this.opts.node, POLICY.id)
    await Promise.all(peers.map(async p => { await this.syncWith(p) }))
  }

  private schedulePush (): void {
    if (this.pushTimer != null || this.stopped) return
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined
      void this.syncAll()
    }, PUSH_DELAY_MS)
    this.pushTimer.unref()
  }

  private tick (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      void (async () => {
        const peers = await livePeers(this.opts.node, POLICY.id)
        if (peers.length > 0) await this.syncWith(peers[Math.floor(Math.random() * peers.length)])
      })().finally(() => { this.tick() })
    }, jittered(this.opts.intervalMs))
    this.timer.unref()
  }
}

/** `ms` ± 25 %, so that nodes started together do not all act in the same instant. */
export function jittered (ms: number): number {
  return Math.round(ms * (0.75 + Math.random() * 0.5))
}
