import { randomBytes } from 'node:crypto'
import type { FetchJob, FetchStatus } from '../fetch/fetch-job.js'

/** How many finished sets are remembered for status queries; the oldest are forgotten first. */
const MAX_SETS = 1000

export interface FetchSetStatus {
  id: string
  done: boolean
  ok: boolean
  images: FetchStatus[]
}

/**
 * Sets of images fetched together (a spawn: kernel, ramdisk, machine image), each with a status
 * resource at `/v1/fetch/{id}`.
 */
export class FetchSets {
  private readonly sets = new Map<string, FetchJob[]>()

  add (jobs: FetchJob[]): string {
    const id = randomBytes(8).toString('hex')
    this.sets.set(id, jobs)
    while (this.sets.size > MAX_SETS) this.sets.delete(this.sets.keys().next().value!)
    return id
  }

  status (id: string): FetchSetStatus | undefined {
    const jobs = this.sets.get(id)
    if (jobs == null) return undefined
    const done = jobs.every(j => j.finished)
    return { id, done, ok: done && jobs.every(j => j.status.state === 'available'), images: jobs.map(j => ({ ...j.status, bytes: { ...j.status.bytes } })) }
  }
}
