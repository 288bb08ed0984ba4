// A writer of format-1 stores, the layout imgswarm used before chunk bytes moved to the chunk log
// (format 2): one LevelDB at <data>/db with chunk bytes under sublevel `c` keyed by their digest,
// manifests under `m` and JSON image records under `i` by image hex, leases under `l` by
// `<hex><holder>`, and `meta/format` = "1". Written here with raw LevelDB, as that release did, so
// that the migration is tested on the bytes an old store really holds.
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { Level } from 'level'
import { chunkOf } from '../../src/chunks/cid.js'
import { Chunker, DEFAULT_CHUNKER } from '../../src/chunks/fastcdc.js'
import { ManifestBuilder, encodeManifest, manifestCid, type ImageType } from '../../src/chunks/manifest.js'

export interface Format1Image {
  bytes: Uint8Array
  name: string
  type?: ImageType
  pinned?: boolean
  state?: 'available' | 'fetching' | 'failed'
  /** Lease holders, each with an optional expiry (ISO time). */
  leases?: Array<{ holder: string, expires?: string }>
}

export interface Format1Written {
  ref: string
  manifest: string
  chunks: number
}

export async function writeFormat1Store (dataDir: string, images: Format1Image[]): Promise<Format1Written[]> {
  const db = new Level<string, Uint8Array>(join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  const chunks = db.sublevel<Uint8Array, Uint8Array>('c', { keyEncoding: 'view', valueEncoding: 'view' })
  const manifests = db.sublevel<string, Uint8Array>('m', { keyEncoding: 'utf8', valueEncoding: 'view' })
  const records = db.sublevel<string, object>('i', { keyEncoding: 'utf8', valueEncoding: 'json' })
  const leases = db.sublevel<string, object>('l', { keyEncoding: 'utf8', valueEncoding: 'json' })
  const meta = db.sublevel<string, string>('meta', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  const written: Format1Written[] = []
  try {
    await meta.put('format', '1')
    for (const img of images) {
      const chunker = new Chunker(DEFAULT_CHUNKER)
      const builder = new ManifestBuilder()
      const pieces = [...chunker.push(img.bytes), ...chunker.finish()]
      for (let i = 0; i < pieces.length; i += 16) {
        const batch = pieces.slice(i, i + 16).map(chunkOf)
        for (const c of batch) builder.add(c.digest, c.bytes.length)
        await chunks.batch(batch.map(c => ({ type: 'put' as const, key: c.digest, value: c.bytes })))
      }
      const digest = createHash('sha256').update(img.bytes).digest()
      const hex = digest.toString('hex')
      const manifest = builder.build(digest, DEFAULT_CHUNKER, { type: img.type ?? 'machine', name: img.name, format: 'raw' })
      const encoded = encodeManifest(manifest)
      const cid = manifestCid(encoded).toString()
      const now = new Date().toISOString()
      await manifests.put(hex, encoded)
      await records.put(hex, {
        ref: `sha256:${hex}`, size: img.bytes.length, state: img.state ?? 'available', pinned: img.pinned ?? false,
        manifest: cid, chunks: pieces.length, type: img.type ?? 'machine', name: img.name, format: 'raw',
        created: now, lastAccess: now, hits: 3, sources: { local: img.bytes.length, peers: 0, origin: 0 }
      })
      for (const l of img.leases ?? []) {
        await leases.put(hex + l.holder, { ref: `sha256:${hex}`, holder: l.holder, created: now, ...l.expires != null ? { expires: l.expires } : {} })
      }
      written.push({ ref: `sha256:${hex}`, manifest: cid, chunks: pieces.length })
    }
  } finally {
    await db.close()
  }
  return written
}

/** Chunks still in the format-1 place (sublevel `c` of the catalog): how far a migration got. */
export async function format1ChunksLeft (dataDir: string): Promise<number> {
  const db = new Level<string, Uint8Array>(join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  try {
    let n = 0
    for await (const _ of db.sublevel<Uint8Array, Uint8Array>('c', { keyEncoding: 'view', valueEncoding: 'view' }).keys()) n++
    return n
  } finally {
    await db.close()
  }
}
