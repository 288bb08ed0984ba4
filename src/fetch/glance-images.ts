import { createHash } from 'node:crypto'
import type { ImageType } from '../chunks/manifest.js'
import { digestRef } from '../chunks/ref.js'
import { DigestMismatchError, ImageNotAvailableError } from '../errors.js'
import { checkGlanceImage, checkedAgainst, type GlanceImage, type GlanceOrigin } from '../origin/glance-origin.js'
import type { GlanceAlias } from '../store/glance-aliases.js'
import type { ImageRecord } from '../store/image-record.js'
import { ingest } from '../store/ingest.js'
import type { LevelStore } from '../store/level-store.js'
import { readImage } from '../store/read-image.js'
import { silentLogger, type Logger } from '../util/log.js'
import type { Admission, ImageToAdmit } from './fetcher.js'

const HEX64 = /^[0-9a-f]{64}$/

/** What {@link GlanceImages.resolve} found: the sha256 to fetch by, and the check to run once fetched. */
export interface ResolvedGlanceImage {
  hex: string
  image: GlanceImage
  /** Checks the fetched image against Glance's word and records the alias; absent when already done. */
  verify?: (record: ImageRecord) => Promise<void>
  /** Where the sha256 came from. A `peer-claim` must pass `verify` before a byte is served under the id. */
  from: 'alias' | 'glance-hash' | 'peer-claim' | 'glance-download'
}

/** A neighbour's word on which sha256 a Glance id is (src/peer/glance-alias-protocol.ts). */
export interface AliasClaim {
  peer: string
  hex: string
  size: number
  osHashAlgo?: string
  osHashValue?: string
  checksum?: string
}

/** Asks neighbours about a Glance id of an endpoint; answers are claims, checked here. */
export type AskPeers = (endpoint: string, id: string, options: { signal?: AbortSignal }) => Promise<AliasClaim[]>

export interface ResolveOptions {
  /** The caller's Keystone token; the origin's own when absent. */
  token?: string
  signal?: AbortSignal
  /** Glance's metadata when the caller just read it (with the same token). */
  image?: GlanceImage
}

/**
 * Maps Glance image ids to the sha256 the swarm names images by. Glance is asked about the id every
 * time, with the caller's token (so Glance decides who may read it, and only `active` images go on).
 * The sha256 then comes from, in order: the node's alias table (an earlier verified fetch); Glance's
 * own hash when Glance hashes with sha256 (the fetch checks it); a neighbour's claim that agrees with
 * Glance's size and hash (the image is then fetched by sha256 from the swarm and hashed again with
 * Glance's algorithm before the alias is recorded or a byte served under the id); else the whole
 * image is read from Glance once, checked against Glance's size and `os_hash_value`, and stored, and
 * the alias recorded. Concurrent requests for one new id share one download.
 */
export class GlanceImages {
  private readonly downloads = new Map<string, Promise<string>>()
  private readonly log: Logger
  /** Bytes of image data read from Glance by this resolver's downloads. */
  downloadedBytes = 0

  /** Claims that proved false (`<id> <hex>`): not taken again. */
  private readonly falseClaims = new Set<string>()

  private readonly askPeers?: AskPeers
  private readonly onAlias?: (id: string) => void
  private readonly admit?: (image: ImageToAdmit) => Promise<Admission>

  /**
   * `askPeers` asks neighbours about an id; `onAlias` hears of each alias recorded (to announce it);
   * `admit` makes room under the cache's cap before a download from Glance (the fetcher's admission).
   */
  constructor (private readonly origin: GlanceOrigin, private readonly store: LevelStore, options: { log?: Logger, askPeers?: AskPeers, onAlias?: (id: string) => void, admit?: (image: ImageToAdmit) => Promise<Admission> } = {}) {
    this.log = options.log ?? silentLogger
    this.askPeers = options.askPeers
    this.onAlias = options.onAlias
    this.admit = options.admit
    origin.lookupId = async hex => (await store.glanceAliases.idsOf(hex))[0]
  }

  async resolve (id: string, options: ResolveOptions = {}): Promise<ResolvedGlanceImage> {
    // A record the caller read itself is checked here as describe() checks its own.
    const image = options.image != null ? checkGlanceImage(options.image, `Glance image ${id}`) : await this.origin.describe(id, { token: options.token, signal: options.signal })
    if (image.status !== 'active') throw new ImageNotAvailableError(`Glance image ${id} is ${image.status}, not active`)
    const alias = await this.store.glanceAliases.get(id)
    if (alias != null && agrees(alias, image)) {
      this.origin.learn(alias.hex, image.id)
      return { hex: alias.hex, image, from: 'alias' }
    }
    if (alias != null) this.log.warn('a recorded Glance alias no longer matches what Glance says; it is checked again', { id, alias })
    const ownHash = image.os_hash_algo === 'sha256' ? image.os_hash_value?.toLowerCase() : undefined
    if (ownHash != null && HEX64.test(ownHash)) {
      // The fetch checks the bytes against the sha256, which is Glance's own hash here.
      this.origin.learn(ownHash, image.id)
      return {
        hex: ownHash,
        image,
        from: 'glance-hash',
        verify: async record => {
          if (record.size !== image.size) throw new DigestMismatchError(`Glance image ${id} has ${image.size ?? '?'} bytes, but ${record.ref} has ${record.size}`)
          await this.record(image, ownHash)
        }
      }
    }
    const claim = (await this.peerClaims(image, options))[0]
    if (claim != null) {
      this.origin.learn(claim.hex, image.id)
      return { hex: claim.hex, image, from: 'peer-claim', verify: async record => { await this.checkClaim(image, claim, record) } }
    }
    let download = this.downloads.get(image.id)
    if (download == null) {
      download = this.download(image, options).finally(() => { this.downloads.delete(image.id) })
      this.downloads.set(image.id, download)
    }
    const hex = await download
    this.origin.learn(hex, image.id)
    return { hex, image, from: 'glance-download' }
  }

  /** Neighbours' claims that agree with what Glance says (size and hash), not yet proved false. */
  private async peerClaims (image: GlanceImage, options: ResolveOptions): Promise<AliasClaim[]> {
    if (this.askPeers == null) return []
    let claims: AliasClaim[]
    try {
      claims = await this.askPeers(this.origin.endpoint, image.id, { signal: options.signal })
    } catch (err) {
      this.log.info('asking neighbours about a Glance id failed', { id: image.id, err })
      return []
    }
    return claims.filter(c => !this.falseClaims.has(`${image.id} ${c.hex}`) &&
      c.size === image.size &&
      (c.osHashAlgo ?? null) === (image.os_hash_algo ?? null) &&
      (c.osHashValue ?? null) === (image.os_hash_value ?? null) &&
      (c.checksum ?? null) === (image.checksum ?? null))
  }

  /**
   * Hashes the image fetched on a neighbour's word with Glance's own algorithm; records the alias
   * when it matches, else remembers the claim as false and throws.
   */
  private async checkClaim (image: GlanceImage, claim: AliasClaim, record: ImageRecord): Promise<void> {
    try {
      if (record.size !== image.size) throw new DigestMismatchError(`Glance image ${image.id} has ${image.size ?? '?'} bytes, ${record.ref} has ${record.size}`)
      const algo = image.os_hash_value != null && image.os_hash_algo != null ? image.os_hash_algo : 'md5'
      const expected = image.os_hash_value != null && image.os_hash_algo != null ? image.os_hash_value : image.checksum
      if (expected == null) throw new DigestMismatchError(`Glance gives no hash for image ${image.id}: a neighbour's claim cannot be checked`)
      const hash = createHash(algo)
      for await (const window of readImage(this.store, await this.store.getManifest(record))) for (const c of window) hash.update(c.bytes)
      const actual = hash.digest('hex')
      if (actual !== expected.toLowerCase()) throw new DigestMismatchError(`${record.ref} hashes to ${algo}:${actual}, Glance says ${algo}:${expected}`)
    } catch (err) {
      this.falseClaims.add(`${image.id} ${claim.hex}`)
      this.log.warn('a neighbour\'s claim about a Glance id was false', { id: image.id, peer: claim.peer, err })
      throw new DigestMismatchError(`peer ${claim.peer} said Glance image ${image.id} is ${digestRef(claim.hex)}, but ${(err as Error).message}`)
    }
    await this.record(image, claim.hex)
  }

  /** Reads the whole image from Glance into the store, checked against Glance's hash and size. */
  private async download (image: GlanceImage, options: ResolveOptions): Promise<string> {
    const started = Date.now()
    const counted = async function * (this: GlanceImages): AsyncGenerator<Uint8Array> {
      for await (const piece of this.origin.readById(image.id, { token: options.token, signal: options.signal })) {
        this.downloadedBytes += piece.length
        yield piece
      }
    }.call(this)
    const meta = { type: typeOf(image), name: image.name ?? '', format: image.disk_format ?? '' }
    // Its sha256 is not known before the bytes are: the room is reserved under the Glance id.
    const admission = await this.admit?.({ hex: `glance-${image.id}`, name: `Glance image ${image.id}`, size: image.size ?? 0 })
    let recorded = false
    let record: ImageRecord
    try {
      ({ record } = await ingest(this.store, checkedAgainst(image, counted), { meta, from: 'origin', signal: options.signal }))
      recorded = true
    } finally {
      admission?.release(recorded)
    }
    const hex = record.ref.slice('sha256:'.length)
    await this.record(image, hex)
    this.log.info('Glance image stored', { id: image.id, image: digestRef(hex), bytes: record.size, ms: Date.now() - started })
    return hex
  }

  private async record (image: GlanceImage, hex: string): Promise<void> {
    await this.store.glanceAliases.put({
      id: image.id,
      hex,
      endpoint: this.origin.endpoint,
      size: image.size ?? 0,
      ...(image.os_hash_algo != null ? { osHashAlgo: image.os_hash_algo } : {}),
      ...(image.os_hash_value != null ? { osHashValue: image.os_hash_value } : {}),
      ...(image.checksum != null ? { checksum: image.checksum } : {}),
      recorded: new Date().toISOString()
    })
    this.onAlias?.(image.id)
  }
}

/** Whether a recorded alias still describes what Glance says of the id (Glance images are immutable once active). */
function agrees (alias: GlanceAlias, image: GlanceImage): boolean {
  return alias.size === image.size &&
    (alias.osHashValue ?? null) === (image.os_hash_value ?? null) &&
    (alias.checksum ?? null) === (image.checksum ?? null)
}

/** Glance's disk formats for kernels and ramdisks; everything else boots as a machine image. */
function typeOf (image: GlanceImage): ImageType {
  if (image.disk_format === 'aki') return 'kernel'
  if (image.disk_format === 'ari') return 'ramdisk'
  return 'machine'
}
