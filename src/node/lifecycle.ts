import type { Logger } from '../util/log.js'

/** A part of a running node: what to do once everything is built, and how to stop it. */
export interface Part {
  /** Runs when the whole node is built (timers and sweeps that use the other parts). */
  start?: () => void | Promise<void>
  stop?: () => void | Promise<void>
}

/**
 * The parts of a node in the order they were built, each depending only on those before it (libp2p's
 * Startable pattern): {@link start} runs their starts in that order once all are built, and
 * {@link stop} stops them in reverse, whether the node ran or failed half way through being built. One
 * list, so the start-up's cleanup and the shutdown cannot disagree about what to stop, or in what order.
 */
export class Lifecycle {
  private readonly parts: Array<{ name: string, part: Part }> = []
  private stopping?: Promise<void>

  constructor (private readonly log: Logger) {}

  /** Adds a part built just now (after the parts it uses). */
  add (name: string, part: Part): void {
    this.parts.push({ name, part })
  }

  async start (): Promise<void> {
    for (const { part } of this.parts) await part.start?.()
  }

  /** Stops every part, last built first; a part that fails to stop is logged and the rest still stop. */
  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      for (const { name, part } of [...this.parts].reverse()) {
        try {
          await part.stop?.()
        } catch (err) {
          this.log.warn(`${name} stop failed`, { err })
        }
      }
    })()
    await this.stopping
  }
}
