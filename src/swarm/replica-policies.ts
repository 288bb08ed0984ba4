import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { UsageError } from '../errors.js'
import { silentLogger, type Logger } from '../util/log.js'

/** The file, in the data dir, that keeps the policies across restarts. */
export const REPLICAS_FILE = 'replicas.json'

/** Most policies a node keeps (cleared ones included): bounds the file, the memory and the sync frame. */
export const MAX_POLICIES = 1024

/** Largest minimum accepted: more replicas than any cluster this is meant for. */
export const MAX_MIN_REPLICAS = 64

/**
 * How far in the future a peer's timestamp may be. Last writer wins, so a peer with a clock far
 * ahead (or a hostile one) could otherwise make its policy impossible to change.
 */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000

/**
 * One image's minimum replica count. `min: 0` is a cleared policy, kept (as a tombstone) so that the
 * clearing spreads and beats the older setting everywhere. Versions are ordered by `ts` (ms since
 * the epoch, at the node that set it), then by `by` (that node's peer ID) to break ties.
 */
export interface ReplicaPolicy {
  /** The image's sha256, 64 hex digits. */
  image: string
  min: number
  ts: number
  by: string
}

/** Whether `a` is a later version than `b`: last writer wins. */
export function newer (a: ReplicaPolicy, b: ReplicaPolicy): boolean {
  return a.ts !== b.ts ? a.ts > b.ts : a.by > b.by
}

/**
 * Checks a policy from a file or a peer.
 * @returns the policy, or a reason why it is refused
 */
export function checkPolicy (v: unknown, now = Date.now()): ReplicaPolicy | string {
  if (v == null || typeof v !== 'object') return 'not an object'
  const p = v as Record<string, unknown>
  if (typeof p.image !== 'string' || !/^[0-9a-f]{64}$/.test(p.image)) return 'image is not 64 hex digits'
  if (typeof p.min !== 'number' || !Number.isInteger(p.min) || p.min < 0 || p.min > MAX_MIN_REPLICAS) return `min is not an integer from 0 to ${MAX_MIN_REPLICAS}`
  if (typeof p.ts !== 'number' || !Number.isSafeInteger(p.ts) || p.ts < 0) return 'ts is not a timestamp'
  if (p.ts > now + MAX_CLOCK_SKEW_MS) return `ts is ${Math.round((p.ts - now) / 1000)} s in the future`
  if (typeof p.by !== 'string' || p.by.length === 0 || p.by.length > 128) return 'by is not a peer ID'
  return { image: p.image, min: p.min, ts: p.ts, by: p.by }
}

/**
 * The cluster-wide minimum-replica policies as this node knows them: set here through the API, or
 * learnt from peers (last writer wins). Kept in `<data>/replicas.json`, replaced atomically on every
 * change. Emits `changed` with the policies that changed, whichever way they came.
 */
export class ReplicaPolicies extends EventEmitter {
  private readonly policies = new Map<string, ReplicaPolicy>()
  private readonly file: string
  private readonly selfId: string
  private readonly log: Logger
  private writing: Promise<void> = Promise.resolve()

  private constructor (dir: string, selfId: string, log: Logger) {
    super()
    this.file = join(dir, REPLICAS_FILE)
    this.selfId = selfId
    this.log = log
  }

  /**
   * Loads the policies from `<dir>/replicas.json` (none if it does not exist). A damaged file is
   * logged and set aside as `replicas.json.bad`: the policies come back from peers.
   */
  static async open (dir: string, selfId: string, log: Logger = silentLogger): Promise<ReplicaPolicies> {
    const p = new ReplicaPolicies(dir, selfId, log)
    let text: string | undefined
    try {
      text = await readFile(p.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    if (text != null) {
      try {
        const parsed = JSON.parse(text) as { policies?: unknown }
        if (!Array.isArray(parsed.policies)) throw new Error('no policies list')
        // Our own file: a timestamp in the future is still ours (the clock may have been set back).
        for (const v of parsed.policies.slice(0, MAX_POLICIES)) {
          const c = checkPolicy(v, Infinity)
          if (typeof c !== 'string') p.policies.set(c.image, c)
        }
      } catch (err) {
        log.warn('replica policy file is damaged; set aside, policies will be learnt from peers', { file: p.file, err })
        await rename(p.file, `${p.file}.bad`).catch(() => {})
      }
    }
    return p
  }

  /** Every policy this node knows, cleared ones included (what is synchronised). */
  all (): ReplicaPolicy[] {
    return [...this.policies.values()].map(p => ({ ...p }))
  }

  /** The policies in force (min > 0), sorted by image. */
  active (): ReplicaPolicy[] {
    return this.all().filter(p => p.min > 0).sort((a, b) => a.image < b.image ? -1 : 1)
  }

  get (hex: string): ReplicaPolicy | undefined {
    const p = this.policies.get(hex)
    return p != null ? { ...p } : undefined
  }

  /**
   * Whether a policy keeps this image: a node that holds it must not evict it (it is one of the
   * replicas the policy asks for), as if it were pinned.
   */
  protects (hex: string): boolean {
    return (this.policies.get(hex)?.min ?? 0) > 0
  }

  /**
   * Sets (or with `min` 0 clears) an image's policy here, as a version newer than any seen so far.
   * @throws UsageError for a min out of range, or a new image when the table is full
   */
  async set (hex: string, min: number): Promise<ReplicaPolicy> {
    if (!Number.isInteger(min) || min < 0 || min > MAX_MIN_REPLICAS) throw new UsageError(`min must be an integer from 0 to ${MAX_MIN_REPLICAS}`)
    const old = this.policies.get(hex)
    const policy: ReplicaPolicy = { image: hex, min, ts: Math.max(Date.now(), (old?.ts ?? 0) + 1), by: this.selfId }
    if (!this.makeRoom(hex)) throw new UsageError(`this node already keeps ${MAX_POLICIES} replica policies; clear some first`)
    this.policies.set(hex, policy)
    await this.save()
    this.emit('changed', [policy])
    return { ...policy }
  }

  /**
   * Adopts every policy from a peer that is newer than ours. Invalid entries are skipped (and
   * logged): one bad entry does not spoil the rest.
   * @returns the policies adopted
   */
  async merge (entries: unknown[], from = 'a peer'): Promise<ReplicaPolicy[]> {
    const adopted: ReplicaPolicy[] = []
    const now = Date.now()
    for (const v of entries.slice(0, MAX_POLICIES)) {
      const c = checkPolicy(v, now)
      if (typeof c === 'string') {
        this.log.debug('refused a replica policy', { from, reason: c })
        continue
      }
      const old = this.policies.get(c.image)
      if (old != null && !newer(c, old)) continue
      if (!this.makeRoom(c.image)) {
        this.log.warn('replica policy table full; a peer\'s policy was not adopted', { from, image: c.image })
        continue
      }
      this.policies.set(c.image, c)
      adopted.push(c)
    }
    if (adopted.length > 0) {
      await this.save()
      this.emit('changed', adopted)
    }
    return adopted
  }

  /** Waits for pending writes of the file (for tests and shutdown). */
  async flush (): Promise<void> {
    await this.writing
  }

  /** Makes room for `hex` if it is new and the table is full, by dropping the oldest cleared policy. */
  private makeRoom (hex: string): boolean {
    if (this.policies.has(hex) || this.policies.size < MAX_POLICIES) return true
    let oldest: ReplicaPolicy | undefined
    for (const p of this.policies.values()) if (p.min === 0 && (oldest == null || p.ts < oldest.ts)) oldest = p
    if (oldest == null) return false
    this.policies.delete(oldest.image)
    return true
  }

  /** Writes the table to a temporary file, syncs it and renames it over the old one: a crash leaves one or the other. */
  private async save (): Promise<void> {
    const text = JSON.stringify({ version: 1, policies: this.all() }, null, 1) + '\n'
    const run = this.writing.then(async () => {
      const tmp = `${this.file}.${randomBytes(4).toString('hex')}.tmp`
      const fh = await open(tmp, 'w', 0o644)
      try {
        await fh.writeFile(text)
        await fh.sync()
        await fh.close()
        await rename(tmp, this.file)
      } catch (err) {
        await fh.close().catch(() => {})
        await unlink(tmp).catch(() => {})
        throw err
      }
    })
    this.writing = run.catch(() => {})
    await run
  }
}
