import type { InUse } from '../cache/in-use.js'
import type { Manifest } from '../chunks/manifest.js'
import { parseImageNaming } from '../chunks/ref.js'
import type { FetchJob } from '../fetch/fetch-job.js'
import type { ImageRecord } from '../store/image-record.js'
import type { LevelStore } from '../store/level-store.js'
import type { BootRecorder } from './boot-recorder.js'
import { ImageReader } from './image-reader.js'
import type { NbdExport, NbdExports } from './nbd-connection.js'

/** Names NBD_OPT_LIST gives at most. */
const MAX_LISTED = 1000

export interface ImageExportsOptions {
  store: LevelStore
  inUse: InUse
  /** The image, stored or being fetched: a fetch starts when the node does not hold it (the daemon's acquire). */
  acquire: (ref: string, signal: AbortSignal) => Promise<{ record: ImageRecord, manifest: Manifest, job?: FetchJob }>
  /** Told of every read, to record the image's boot profile. */
  recorder?: BootRecorder
}

/**
 * The node's images as NBD exports, named by any form of their ref. An open export keeps its image
 * in use (eviction leaves it alone); reads of an image still arriving fetch their chunks first.
 */
export function imageExports (o: ImageExportsOptions): NbdExports {
  return {
    open: async (name: string, signal: AbortSignal): Promise<NbdExport> => {
      const ref = parseImageNaming(name)
      const { record, manifest, job } = await o.acquire(name, signal)
      const release = o.inUse.hold(record.ref.slice('sha256:'.length))
      const reader = new ImageReader({ store: o.store, manifest, job, manifestCid: record.manifest, namedCid: ref.kind === 'manifest' ? ref.cid.toString() : undefined })
      let closed = false
      const hex = record.ref.slice('sha256:'.length)
      return {
        size: record.size,
        read: async (offset, length, s) => {
          o.recorder?.noteRead(hex, manifest, record.manifest, offset, length)
          return await reader.read(offset, length, s)
        },
        close: () => {
          if (closed) return
          closed = true
          release()
          void o.store.noteRead(record.ref).catch(() => {})
        }
      }
    },
    list: async () => (await o.store.listImages()).filter(r => r.state === 'available').slice(0, MAX_LISTED).map(r => r.ref)
  }
}
