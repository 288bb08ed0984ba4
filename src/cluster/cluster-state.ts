import { randomBytes } from 'node:crypto'
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ClusterError } from '../errors.js'

/** The state file's name in the cluster dir. */
export const STATE_FILE = 'cluster.json'

/**
 * One thing a cluster made, recorded in the state file *before* it is made, so that `cluster down`
 * can undo it whatever happened afterwards (a crash of `up`, a killed node, a reboot of nothing).
 * Undoing something that was never made is a no-op.
 */
export type ClusterResource =
  /** A file or directory; removed recursively. */
  | { kind: 'file', path: string }
  /** A network namespace (`ip netns add NAME`). */
  | { kind: 'netns', name: string }
  /** A link in the host's namespace: the bridge, or the host end of a veth pair (deleting it deletes the pair). */
  | { kind: 'link', name: string }
  /**
   * A process. `pid` and `startTime` (clock ticks after boot, from /proc) are filled in right after
   * the spawn; the pair tells a live process from a later one that reuses its pid.
   */
  | { kind: 'process', name: string, pid?: number, startTime?: string }

/** A node as `up` planned it; `multiaddrs` are the ones it reported once running. */
export interface ClusterNode {
  name: string
  /** The node's data dir. */
  data: string
  /** `unix:<data>/api.sock`: reachable from the host without crossing the shaped links. */
  api: string
  peerId: string
  /** Where it listens for peers. */
  listen: string
  multiaddrs: string[]
  /** Its network namespace, with `--netns`. */
  netns?: string
}

export interface ClusterState {
  format: 1
  /** Random hex naming this cluster's namespaces and links, so that clusters never collide. */
  id: string
  dir: string
  mode: 'loopback' | 'netns'
  /** Whether `up` created `dir` (then `down` removes it when it is empty). */
  createdDir: boolean
  /** The `up` process while it runs; `down` stops it before undoing anything. */
  up: { pid: number, startTime?: string } | null
  /** True once `up` saw every node ready and connected. */
  ready: boolean
  origin: string | null
  rate: string | null
  delay: string | null
  nodes: ClusterNode[]
  resources: ClusterResource[]
}

export function newClusterId (): string {
  return randomBytes(3).toString('hex')
}

/** Reads `DIR/cluster.json`; undefined when there is none. */
export async function readState (dir: string): Promise<ClusterState | undefined> {
  let text: string
  try {
    text = await readFile(join(dir, STATE_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined
    throw new ClusterError(`cannot read the cluster state ${join(dir, STATE_FILE)}: ${(err as Error).message}`, { cause: err })
  }
  let state: ClusterState
  try {
    state = JSON.parse(text) as ClusterState
  } catch (err) {
    throw new ClusterError(`the cluster state ${join(dir, STATE_FILE)} is not valid JSON (a crash while writing it cannot cause this: it is replaced atomically)`, { cause: err })
  }
  if (state.format !== 1 || !Array.isArray(state.resources) || !Array.isArray(state.nodes)) {
    throw new ClusterError(`${join(dir, STATE_FILE)} is not an imgswarm cluster state of format 1`)
  }
  return state
}

/**
 * The state file of one cluster, kept in step with what exists. Every change is written to a
 * temporary file and renamed over the old one, so a crash leaves either the old or the new state.
 * Saves are queued: concurrent `record` calls land in order.
 */
export class StateFile {
  readonly path: string
  private queue: Promise<void> = Promise.resolve()

  private constructor (readonly state: ClusterState) {
    this.path = join(state.dir, STATE_FILE)
  }

  /**
   * Creates the state file, failing when one exists: two `up` runs on one dir cannot both win
   * (the file is linked into place, which never replaces an existing file).
   */
  static async create (state: ClusterState): Promise<StateFile> {
    const file = new StateFile(state)
    const tmp = `${file.path}.${process.pid}.new`
    await writeFile(tmp, JSON.stringify(state, null, 2) + '\n')
    try {
      await link(tmp, file.path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ClusterError(`${state.dir} already holds a cluster (${STATE_FILE}); run \`imgswarm cluster down --dir ${state.dir}\` first`)
      }
      throw err
    } finally {
      await unlink(tmp).catch(() => {})
    }
    return file
  }

  /** Wraps a state read from disk, for `down` to update as it undoes things. */
  static open (state: ClusterState): StateFile {
    return new StateFile(state)
  }

  /** Records a resource and waits until the record is on disk: call it before making the thing. */
  async record<R extends ClusterResource> (resource: R): Promise<R> {
    this.state.resources.push(resource)
    await this.save()
    return resource
  }

  async save (): Promise<void> {
    const json = JSON.stringify(this.state, null, 2) + '\n'
    const run = async (): Promise<void> => {
      const tmp = `${this.path}.${process.pid}.new`
      await writeFile(tmp, json)
      await rename(tmp, this.path)
    }
    this.queue = this.queue.then(run, run)
    await this.queue
  }

  async remove (): Promise<void> {
    await this.queue.catch(() => {})
    await unlink(this.path).catch(err => { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err })
  }
}
