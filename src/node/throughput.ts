/** Seconds of history kept for the page's throughput chart. */
export const THROUGHPUT_SECONDS = 120

export type FlowKind = 'peer' | 'origin' | 'served'

/** Bytes a second received from peers and from the origin, and served to peers, in one second. */
export interface ThroughputPoint {
  /** Unix time of the second, in seconds. */
  t: number
  peer: number
  origin: number
  served: number
}

/**
 * This node's throughput over the last {@link THROUGHPUT_SECONDS} seconds, one bucket a second,
 * counted as bytes pass (no timer): memory is fixed whatever the traffic.
 */
export class Throughput {
  private readonly buckets: ThroughputPoint[] = []

  add (kind: FlowKind, bytes: number, now = Date.now()): void {
    const t = Math.floor(now / 1000)
    let last = this.buckets[this.buckets.length - 1]
    if (last == null || last.t !== t) {
      last = { t, peer: 0, origin: 0, served: 0 }
      this.buckets.push(last)
      while (this.buckets.length > 0 && this.buckets[0].t <= t - THROUGHPUT_SECONDS) this.buckets.shift()
    }
    last[kind] += bytes
  }

  /** Every second of the window up to the last whole second, oldest first, quiet seconds as zeros. */
  series (now = Date.now()): ThroughputPoint[] {
    const end = Math.floor(now / 1000) - 1
    const byT = new Map(this.buckets.map(b => [b.t, b]))
    const out: ThroughputPoint[] = []
    for (let t = end - THROUGHPUT_SECONDS + 1; t <= end; t++) out.push({ ...(byT.get(t) ?? { t, peer: 0, origin: 0, served: 0 }) })
    return out
  }
}
