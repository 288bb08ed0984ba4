import { EventEmitter } from 'node:events'
import type { ImageRecord } from '../store/image-record.js'

/**
 * What happened to an image on this node: a fetch began (`fetching`), ended (`available`, `failed`),
 * the evictor removed it (`evicted`), or it came in through the API (`imported`).
 */
export type ImageEventKind = 'fetching' | 'available' | 'failed' | 'evicted' | 'imported'

export interface ImageEvent {
  kind: ImageEventKind
  /** The image's record as it was when the event happened (an evicted image's last record). */
  record: ImageRecord
  /** ISO-8601 time of the event. */
  time: string
  /** Chunk bytes an eviction freed (shared chunks that other images keep are not counted). */
  freedBytes?: number
}

export type ImageEventListener = (event: ImageEvent) => void

/**
 * The daemon's image event stream. The page, the logs and the metrics subscribe to it instead of
 * polling the store for what an event already says. A listener that throws is cut off from this one
 * event only: the emitter and the other listeners carry on.
 */
export class ImageEvents {
  private readonly emitter = new EventEmitter()
  private readonly onListenerError: (err: unknown) => void

  constructor (onListenerError: (err: unknown) => void = () => {}) {
    // One listener per page viewer and per subsystem: the page bounds its viewers itself.
    this.emitter.setMaxListeners(0)
    this.onListenerError = onListenerError
  }

  emit (kind: ImageEventKind, record: ImageRecord, extra: { freedBytes?: number } = {}): void {
    const event: ImageEvent = { kind, record, time: new Date().toISOString(), ...extra }
    for (const listener of this.emitter.listeners('image') as ImageEventListener[]) {
      try {
        listener(event)
      } catch (err) {
        this.onListenerError(err)
      }
    }
  }

  /** Calls `listener` for every event from now on; returns the function that stops it. */
  subscribe (listener: ImageEventListener): () => void {
    this.emitter.on('image', listener)
    return () => { this.emitter.off('image', listener) }
  }

  /** How many listeners are subscribed (for tests and the page's bound). */
  get listeners (): number {
    return this.emitter.listenerCount('image')
  }
}
