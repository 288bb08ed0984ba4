import type { FetchSource } from '../fetch/fetch-job.js'

/** Most images a summary lists by digest; a node holding more says how many it left out. */
export const MAX_SUMMARY_IMAGES = 512
/** Most fetches a summary lists. */
export const MAX_SUMMARY_JOBS = 16
/** Longest node name kept. */
export const MAX_NAME_LENGTH = 64

/** One fetch in flight, as a summary shows it. */
export interface JobBrief {
  ref: string
  image?: string
  name?: string
  state: string
  size?: number
  percent?: number
  bytes: Record<FetchSource, number>
  rate: Record<FetchSource, number>
  etaSeconds?: number
}

/**
 * What one node tells the others (and its own page) about itself: small and bounded, whatever the
 * node holds. Sent over `/imgswarm/node-summary/1.0.0`.
 */
export interface NodeSummary {
  name: string
  peerId: string
  version: string
  uptimeSeconds: number
  /** Distinct chunk bytes the stored images name (as `df` says), and the cap when there is one. */
  store: { used: number, cap: number | null, images: number }
  /** Connected peers. */
  peers: number
  /** Digests (hex) of the images it holds available, at most {@link MAX_SUMMARY_IMAGES}. */
  held: string[]
  /** How many held images the list left out. */
  heldOmitted: number
  jobs: JobBrief[]
  /** Bytes a second over the last whole second: received from peers and the origin, served to peers. */
  rate: { peer: number, origin: number, served: number }
}

const HEX64 = /^[0-9a-f]{64}$/

/**
 * Checks a summary a peer sent (its bytes are the peer's word) and keeps only well-formed, bounded
 * fields; the peer ID is the connection's, not what the peer wrote.
 * @throws Error naming the first field that does not fit
 */
export function checkSummary (value: unknown, peerId: string): NodeSummary {
  const o = object(value, 'summary')
  const num = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`${what} is not a non-negative number`)
    return v
  }
  const text = (v: unknown, what: string, max: number): string => {
    if (typeof v !== 'string') throw new Error(`${what} is not text`)
    return v.slice(0, max)
  }
  const store = object(o.store, 'store')
  const rate = object(o.rate, 'rate')
  if (!Array.isArray(o.held) || o.held.length > MAX_SUMMARY_IMAGES || !o.held.every(h => typeof h === 'string' && HEX64.test(h))) throw new Error(`held is not a list of at most ${MAX_SUMMARY_IMAGES} digests`)
  if (!Array.isArray(o.jobs) || o.jobs.length > MAX_SUMMARY_JOBS) throw new Error(`jobs is not a list of at most ${MAX_SUMMARY_JOBS}`)
  const sources = (v: unknown, what: string): Record<FetchSource, number> => {
    const s = object(v, what)
    return { local: num(s.local, `${what}.local`), peer: num(s.peer, `${what}.peer`), origin: num(s.origin, `${what}.origin`) }
  }
  const optional = (v: unknown, what: string): number | undefined => v == null ? undefined : num(v, what)
  return {
    name: text(o.name, 'name', MAX_NAME_LENGTH),
    peerId,
    version: text(o.version, 'version', 32),
    uptimeSeconds: num(o.uptimeSeconds, 'uptimeSeconds'),
    store: { used: num(store.used, 'store.used'), cap: store.cap == null ? null : num(store.cap, 'store.cap'), images: num(store.images, 'store.images') },
    peers: num(o.peers, 'peers'),
    held: o.held as string[],
    heldOmitted: num(o.heldOmitted, 'heldOmitted'),
    jobs: o.jobs.map((j: unknown, i: number) => {
      const b = object(j, `jobs[${i}]`)
      return {
        ref: text(b.ref, 'job ref', 200),
        ...(b.image != null ? { image: text(b.image, 'job image', 80) } : {}),
        ...(b.name != null ? { name: text(b.name, 'job name', 200) } : {}),
        state: text(b.state, 'job state', 16),
        size: optional(b.size, 'job size'),
        percent: optional(b.percent, 'job percent'),
        bytes: sources(b.bytes, 'job bytes'),
        rate: sources(b.rate, 'job rate'),
        etaSeconds: optional(b.etaSeconds, 'job eta')
      }
    }),
    rate: { peer: num(rate.peer, 'rate.peer'), origin: num(rate.origin, 'rate.origin'), served: num(rate.served, 'rate.served') }
  }
}

function object (v: unknown, what: string): Record<string, any> {
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what} is not an object`)
  return v as Record<string, any>
}
