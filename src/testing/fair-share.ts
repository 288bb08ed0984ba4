import type { Clock, TimerHandle } from '../fetch/clock.js'

/** A node's link capacity, in bytes per millisecond each way. */
export interface LinkCapacity { up: number, down: number }

interface Flow {
  from: string
  to: string
  /** Bytes still to move as of `at`. */
  left: number
  rate: number
  at: number
  timer: TimerHandle | undefined
  done: () => void
  fail: (err: unknown) => void
}

/**
 * Shared links for a simulated swarm, event-driven: every transfer runs at the smaller of its two
 * ends' fair shares (the sender's upload capacity over the transfers it sends now, the receiver's
 * download capacity over those it receives now), and every start or end of a transfer re-rates the
 * transfers that share an end with it. A simple model, not max-min fairness: capacity that one
 * transfer cannot use at its other end is not handed to the others.
 */
export class FairShareLinks {
  private readonly sending = new Map<string, Set<Flow>>()
  private readonly receiving = new Map<string, Set<Flow>>()
  /** Bytes moved, by sender. */
  readonly sent = new Map<string, number>()

  constructor (private readonly clock: Clock, private readonly capacity: (id: string) => LinkCapacity) {}

  /** Moves `bytes` from `from` to `to`; resolves when the last byte has arrived, rejects if `signal` aborts first. */
  transfer = async (from: string, to: string, bytes: number, signal?: AbortSignal): Promise<void> => {
    signal?.throwIfAborted()
    if (bytes <= 0) return
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { this.end(flow); reject(signal?.reason) }
      const flow: Flow = {
        from,
        to,
        left: bytes,
        rate: 0,
        at: this.clock.now(),
        timer: undefined,
        done: () => { signal?.removeEventListener('abort', onAbort); resolve() },
        fail: reject
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      setOf(this.sending, from).add(flow)
      setOf(this.receiving, to).add(flow)
      this.rerate(flow.from, flow.to)
    })
    this.sent.set(from, (this.sent.get(from) ?? 0) + bytes)
  }

  /** Transfers running now. */
  get active (): number {
    let n = 0
    for (const s of this.sending.values()) n += s.size
    return n
  }

  private end (flow: Flow): void {
    if (flow.timer !== undefined) this.clock.clearTimer(flow.timer)
    flow.timer = undefined
    const s = this.sending.get(flow.from)
    const r = this.receiving.get(flow.to)
    if (s?.delete(flow) !== true) return // ended already
    r?.delete(flow)
    if (s.size === 0) this.sending.delete(flow.from)
    if (r?.size === 0) this.receiving.delete(flow.to)
    this.rerate(flow.from, flow.to)
  }

  /** New rates for the transfers that send from `from` or receive at `to`. */
  private rerate (from: string, to: string): void {
    const now = this.clock.now()
    for (const f of this.sending.get(from) ?? []) this.rerateOne(f, now)
    // Those that also send from `from` were re-rated above.
    for (const f of this.receiving.get(to) ?? []) if (f.from !== from) this.rerateOne(f, now)
  }

  private rerateOne (f: Flow, now: number): void {
    f.left = Math.max(0, f.left - f.rate * (now - f.at))
    f.at = now
    const up = this.capacity(f.from).up / (this.sending.get(f.from)?.size ?? 1)
    const down = this.capacity(f.to).down / (this.receiving.get(f.to)?.size ?? 1)
    f.rate = Math.min(up, down)
    if (f.timer !== undefined) this.clock.clearTimer(f.timer)
    f.timer = this.clock.setTimer(() => {
      f.timer = undefined
      f.left = 0
      this.end(f)
      f.done()
    }, f.left / f.rate)
  }
}

function setOf (m: Map<string, Set<Flow>>, id: string): Set<Flow> {
  let s = m.get(id)
  if (s == null) m.set(id, s = new Set())
  return s
}
