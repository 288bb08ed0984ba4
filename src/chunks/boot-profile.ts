import { CID } from 'multiformats/cid'
import { chunkCount, type Manifest } from './manifest.js'

/**
 * A boot profile: the chunks of an image that a VM read in its first seconds, in the order it first
 * read them. Recorded by one node, it tells the next node which chunks to fetch first. It is a hint
 * only: it changes the order of fetching, never what bytes are trusted (every chunk is still checked
 * against the manifest that the fetch trusts).
 *
 * Encoding (big-endian): `ISBP`, version byte 1, u16 length + the binary CID of the manifest it was
 * recorded under, u64 milliseconds since the epoch when recorded, u32 count, then per chunk its u32
 * index in that manifest and its 32-byte sha256. Entries are checked against the manifest of the
 * image being fetched when the profile is used, by digest: entries for chunks that manifest does not
 * have are left out, so a profile from another manifest of the same image (other chunker settings)
 * still helps where chunks coincide, and a forged one cannot name anything outside the image.
 */

/** Chunks a profile lists at most (a Linux boot from an ext4 disk reads a few hundred). */
export const MAX_PROFILE_CHUNKS = 4096
/** Chunk bytes a profile names at most: a recording stops there. */
export const MAX_PROFILE_BYTES = 64 * 1024 * 1024
/** Encoded bytes of a profile at most: 36 a chunk plus the header. */
export const MAX_PROFILE_ENCODED = 4 + 1 + 2 + 128 + 8 + 4 + MAX_PROFILE_CHUNKS * 36

const MAGIC = Buffer.from('ISBP', 'latin1')
const VERSION = 1

/** A profile as encoded: what its recorder saw. */
export interface BootProfileEntries {
  /** The CID of the manifest it was recorded under. */
  manifest: string
  /** When it was recorded (ISO-8601). */
  recorded: string
  /** Chunks in first-read order. */
  entries: Array<{ index: number, digest: Uint8Array }>
}

/** A profile checked against one manifest: only its chunks, as indices of that manifest. */
export interface BootProfile {
  manifest: string
  recorded: string
  /** Chunk indices in the manifest checked against, in read order, each once. */
  chunks: number[]
  /** The bytes of those chunks. */
  bytes: number
  /** Encoded size of the profile. */
  encodedBytes: number
}

/** The entries for chunk indices `indices` (in read order) of `manifest`. */
export function profileEntries (manifest: Manifest, manifestCidText: string, indices: number[], recorded = new Date()): BootProfileEntries {
  const n = chunkCount(manifest)
  const seen = new Set<number>()
  const entries: Array<{ index: number, digest: Uint8Array }> = []
  for (const i of indices) {
    if (!Number.isSafeInteger(i) || i < 0 || i >= n || seen.has(i)) continue
    if (entries.length >= MAX_PROFILE_CHUNKS) break
    seen.add(i)
    entries.push({ index: i, digest: manifest.chunkDigests.subarray(i * 32, i * 32 + 32) })
  }
  return { manifest: manifestCidText, recorded: recorded.toISOString(), entries }
}

export function encodeBootProfile (p: BootProfileEntries): Uint8Array {
  const cid = CID.parse(p.manifest).bytes
  const entries = p.entries.slice(0, MAX_PROFILE_CHUNKS)
  const out = Buffer.alloc(4 + 1 + 2 + cid.length + 8 + 4 + entries.length * 36)
  let at = MAGIC.copy(out, 0)
  out[at++] = VERSION
  out.writeUInt16BE(cid.length, at); at += 2
  out.set(cid, at); at += cid.length
  out.writeBigUInt64BE(BigInt(Math.max(0, Date.parse(p.recorded) || 0)), at); at += 8
  out.writeUInt32BE(entries.length, at); at += 4
  for (const e of entries) {
    out.writeUInt32BE(e.index, at); at += 4
    out.set(e.digest.subarray(0, 32), at); at += 32
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/** The entries of an encoded profile, or undefined for bytes that are not one (a profile is a hint: a bad one is ignored). */
export function decodeBootProfile (bytes: Uint8Array): BootProfileEntries | undefined {
  if (bytes.length > MAX_PROFILE_ENCODED || bytes.length < 4 + 1 + 2) return undefined
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  if (!b.subarray(0, 4).equals(MAGIC) || b[4] !== VERSION) return undefined
  let at = 5
  const cidLength = b.readUInt16BE(at); at += 2
  if (cidLength > 128 || at + cidLength + 12 > b.length) return undefined
  let manifest: string
  try {
    manifest = CID.decode(b.subarray(at, at + cidLength)).toString()
  } catch {
    return undefined
  }
  at += cidLength
  const ms = Number(b.readBigUInt64BE(at)); at += 8
  const count = b.readUInt32BE(at); at += 4
  if (count > MAX_PROFILE_CHUNKS || b.length !== at + count * 36) return undefined
  const recorded = new Date(Math.min(ms, 8.64e15))
  const entries: Array<{ index: number, digest: Uint8Array }> = []
  for (let k = 0; k < count; k++, at += 36) {
    entries.push({ index: b.readUInt32BE(at), digest: Uint8Array.from(b.subarray(at + 4, at + 36)) })
  }
  return { manifest, recorded: recorded.toISOString(), entries }
}

/**
 * The profile's chunks that `manifest` has, as its indices, in the profile's order, each once, within
 * the bounds. An entry whose index names the same digest in `manifest` is taken as is; otherwise its
 * digest is looked up among the manifest's chunks; an entry for a chunk the manifest lacks is dropped.
 */
export function checkBootProfile (p: BootProfileEntries, manifest: Manifest, encodedBytes: number): BootProfile {
  const n = chunkCount(manifest)
  const d = manifest.chunkDigests
  const lengths = new DataView(manifest.chunkLengths.buffer, manifest.chunkLengths.byteOffset, manifest.chunkLengths.byteLength)
  let byDigest: Map<string, number> | undefined
  const indexOf = (e: { index: number, digest: Uint8Array }): number | undefined => {
    if (e.digest.length === 32 && e.index < n && Buffer.compare(d.subarray(e.index * 32, e.index * 32 + 32), e.digest) === 0) return e.index
    if (byDigest == null) {
      byDigest = new Map()
      for (let i = n - 1; i >= 0; i--) byDigest.set(Buffer.from(d.buffer, d.byteOffset + i * 32, 32).toString('latin1'), i)
    }
    return byDigest.get(Buffer.from(e.digest).toString('latin1'))
  }
  const seen = new Set<number>()
  const chunks: number[] = []
  let bytes = 0
  for (const e of p.entries) {
    if (chunks.length >= MAX_PROFILE_CHUNKS) break
    const i = indexOf(e)
    if (i == null || seen.has(i)) continue
    const len = lengths.getUint32(i * 4)
    if (bytes + len > MAX_PROFILE_BYTES) break
    seen.add(i)
    chunks.push(i)
    bytes += len
  }
  return { manifest: p.manifest, recorded: p.recorded, chunks, bytes, encodedBytes }
}
