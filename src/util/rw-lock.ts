/**
 * A readers-writer lock for one process: many imports, fetches and exports share the store, while
 * garbage collection, which must see every kept manifest, runs alone. Writers are not starved: once a
 * writer waits, new readers queue behind it.
 */
export class RwLock {
  private readers = 0
  private writer = false
  private readonly queue: Array<{ write: boolean, wake: () => void }> = []

  /** Nobody holds or waits for the lock: a writer taking it now delays no one. */
  get idle (): boolean {
    return this.readers === 0 && !this.writer && this.queue.length === 0
  }

  async read<T> (fn: () => Promise<T>): Promise<T> {
    await this.acquire(false)
    try { return await fn() } finally { this.release(false) }
  }

  async write<T> (fn: () => Promise<T>): Promise<T> {
    await this.acquire(true)
    try { return await fn() } finally { this.release(true) }
  }

  private async acquire (write: boolean): Promise<void> {
    if (this.queue.length === 0 && !this.writer && (!write || this.readers === 0)) {
      this.take(write)
      return
    }
    await new Promise<void>(resolve => this.queue.push({ write, wake: resolve }))
  }

  private take (write: boolean): void {
    if (write) this.writer = true
    else this.readers++
  }

  private release (write: boolean): void {
    if (write) this.writer = false
    else this.readers--
    while (this.queue.length > 0 && !this.writer) {
      const next = this.queue[0]
      if (next.write && this.readers > 0) break
      this.queue.shift()
      this.take(next.write)
      next.wake()
      if (next.write) break
    }
  }
}
