import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  DigestMismatchError, ImgswarmError, InvalidManifestError, OriginAccessDeniedError, OriginConfigError, OriginError,
  OriginNotFoundError
} from '../errors.js'
import {
  DEFAULT_TUNING, imageKey, manifestKey, MAX_PROFILE_ENCODED, profileKey, type Origin, type OriginCallOptions, type OriginCapabilities,
  type OriginReadOptions, type OriginStat, type OriginTuning, type OriginWriteOptions
} from './origin.js'
import { TUNING_PARAMS, checkHex, defined, readParams } from './params.js'
import { resumableRead } from './resumable-read.js'
import { withRetries } from './retry.js'

/** Options of a `file:` origin; URL parameters of the same names are read too. */
export type FileOriginOptions = OriginTuning

/** Reads of 1 MiB: few, large pieces are cheapest for the hash and the chunker downstream. */
const READ_BYTES = 1024 * 1024

/** System errors that may pass when tried again (a busy or stale network file system). */
const TRANSIENT = new Set(['EAGAIN', 'EBUSY', 'ETIMEDOUT', 'ESTALE', 'EINTR'])

/**
 * An origin in a local (or mounted) directory: `file:///srv/images` holds `sha256/<hex>` and
 * `sha256/<hex>.manifest` below it. Writable: new objects are written under a hidden temporary name
 * in the same directory, flushed, and renamed into place only once their digest matched.
 *
 * @example
 * const origin = fileOrigin('file:///srv/images')
 * for await (const piece of origin.read(hex, { offset: 0, length: 4096 })) process.stdout.write(piece)
 */
export function fileOrigin (url: string | URL, options: FileOriginOptions = {}): Origin {
  const u = typeof url === 'string' ? parseUrl(url) : url
  if (u.protocol !== 'file:') throw new OriginConfigError(`not a file: URL: ${u.href}`)
  if (u.host !== '' && u.host !== 'localhost') throw new OriginConfigError(`file origin ${u.href}: only local paths are supported (file:///dir)`)
  const params = readParams(u, TUNING_PARAMS)
  u.search = ''
  let dir: string
  try {
    dir = fileURLToPath(u)
  } catch (err) {
    // Escapes that do not decode, or an encoded `/`: Node throws a URIError or TypeError for these.
    throw new OriginConfigError(`file origin ${u.href}: not a usable path: ${(err as Error).message}`, { cause: err })
  }
  if (dir.includes('\0')) throw new OriginConfigError(`file origin ${u.href}: the path holds a NUL byte`)
  return new FileOrigin(dir, { ...DEFAULT_TUNING, ...params, ...defined(options) })
}

function parseUrl (url: string): URL {
  try {
    return new URL(url)
  } catch (err) {
    throw new OriginConfigError(`not a URL: ${url}`, { cause: err })
  }
}

class FileOrigin implements Origin {
  readonly url: string
  readonly capabilities: OriginCapabilities = { rangeRead: true, manifests: true, write: true }

  constructor (private readonly dir: string, private readonly tuning: Required<OriginTuning>) {
    this.url = pathToFileURL(dir).href
  }

  async stat (hex: string, options: OriginCallOptions = {}): Promise<OriginStat | undefined> {
    checkHex(hex)
    const path = this.path(imageKey('', hex))
    return await withRetries(async () => await statFile(path), { ...this.tuning, what: path, signal: options.signal, mapError: err => mapFsError(err, path) })
  }

  read (hex: string, options: OriginReadOptions = {}): AsyncIterable<Uint8Array> {
    checkHex(hex)
    const path = this.path(imageKey('', hex))
    return resumableRead({
      what: path,
      open: async (start, end, signal) => {
        const st = await statFile(path)
        if (st === undefined) throw new OriginNotFoundError(`${path}: not found`)
        return { size: st.size, body: readStream(path, start, end, signal) }
      },
      stat: async () => await statFile(path),
      mapError: err => mapFsError(err, path)
    }, { ...this.tuning, ...options })
  }

  async readManifest (hex: string, options: OriginCallOptions = {}): Promise<Uint8Array | undefined> {
    checkHex(hex)
    return await this.readSmall(this.path(manifestKey('', hex)), 'manifest', this.tuning.maxManifestBytes, options)
  }

  async readProfile (hex: string, options: OriginCallOptions = {}): Promise<Uint8Array | undefined> {
    checkHex(hex)
    return await this.readSmall(this.path(profileKey('', hex)), 'boot profile', MAX_PROFILE_ENCODED, options)
  }

  /** A small object (manifest, profile) whole, or undefined when missing. */
  private async readSmall (path: string, what: string, max: number, options: OriginCallOptions): Promise<Uint8Array | undefined> {
    return await withRetries(async signal => {
      const st = await statFile(path)
      if (st === undefined) return undefined
      if (st.size > max) throw new InvalidManifestError(`${path}: ${what} of ${st.size} bytes is larger than the ${max} allowed`)
      const bytes = await readFile(path, { signal }).catch(err => {
        if (hasCode(err, 'ENOENT')) return undefined
        throw err
      })
      if (bytes !== undefined && bytes.length > max) throw new InvalidManifestError(`${path}: ${what} of ${bytes.length} bytes is larger than the ${max} allowed`)
      return bytes === undefined ? undefined : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
    }, { ...this.tuning, what: path, signal: options.signal, mapError: err => mapFsError(err, path) })
  }

  async write (hex: string, source: AsyncIterable<Uint8Array>, options: OriginWriteOptions = {}): Promise<OriginStat> {
    checkHex(hex)
    const path = this.path(imageKey('', hex))
    const hash = createHash('sha256')
    let size = 0
    await this.writeAtomically(path, async fh => {
      for await (const piece of source) {
        options.signal?.throwIfAborted()
        hash.update(piece)
        size += piece.length
        await writeAll(fh, piece)
      }
      options.signal?.throwIfAborted()
      const got = hash.digest('hex')
      if (got !== hex) throw new DigestMismatchError(`${path}: the ${size} bytes written hash to sha256:${got}, not sha256:${hex}; nothing was stored`)
    }, options.signal)
    return { size }
  }

  async writeManifest (hex: string, bytes: Uint8Array, options: OriginCallOptions = {}): Promise<void> {
    checkHex(hex)
    const path = this.path(manifestKey('', hex))
    if (bytes.length > this.tuning.maxManifestBytes) throw new InvalidManifestError(`${path}: manifest of ${bytes.length} bytes is larger than the ${this.tuning.maxManifestBytes} allowed`)
    await this.writeAtomically(path, async fh => { await writeAll(fh, bytes) }, options.signal)
  }

  async writeProfile (hex: string, bytes: Uint8Array, options: OriginCallOptions = {}): Promise<void> {
    checkHex(hex)
    const path = this.path(profileKey('', hex))
    if (bytes.length > MAX_PROFILE_ENCODED) throw new InvalidManifestError(`${path}: boot profile of ${bytes.length} bytes is larger than the ${MAX_PROFILE_ENCODED} allowed`)
    await this.writeAtomically(path, async fh => { await writeAll(fh, bytes) }, options.signal)
  }

  async close (): Promise<void> {}

  private path (key: string): string {
    return join(this.dir, ...key.split('/'))
  }

  /** Runs `fill` on a hidden temporary file beside `path`, then flushes it and renames it into place; removes it on failure. */
  private async writeAtomically (path: string, fill: (fh: Awaited<ReturnType<typeof open>>) => Promise<void>, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    const dir = dirname(path)
    const tmp = join(dir, `.${path.slice(dir.length + 1)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
    try {
      await mkdir(dir, { recursive: true })
      const fh = await open(tmp, 'wx', 0o644)
      try {
        await fill(fh)
        await fh.sync()
      } finally {
        await fh.close()
      }
      signal?.throwIfAborted()
      await rename(tmp, path)
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {})
      if (signal?.aborted === true) throw signal.reason
      throw mapFsError(err, path)
    }
    await syncDir(dir)
  }
}

async function statFile (path: string): Promise<OriginStat | undefined> {
  try {
    const st = await stat(path)
    if (!st.isFile()) throw new OriginError(`${path}: not a regular file`)
    return { size: st.size }
  } catch (err) {
    if (hasCode(err, 'ENOENT') || hasCode(err, 'ENOTDIR')) return undefined
    throw err
  }
}

async function * readStream (path: string, start: number, end: number | undefined, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  yield * createReadStream(path, { start, end: end === undefined ? undefined : end - 1, highWaterMark: READ_BYTES, signal })
}

async function writeAll (fh: Awaited<ReturnType<typeof open>>, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.length - off)
    off += bytesWritten
  }
}

/** Makes a rename durable; some file systems refuse to open directories for this, which is harmless. */
async function syncDir (dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r')
    try { await fh.sync() } finally { await fh.close() }
  } catch {}
}

function hasCode (err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code
}

function mapFsError (err: unknown, path: string): unknown {
  if (err instanceof ImgswarmError || (err as Error | null)?.name === 'AbortError') return err
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ENOENT' || code === 'ENOTDIR') return new OriginNotFoundError(`${path}: not found`, { cause: err })
  if (code === 'EACCES' || code === 'EPERM') return new OriginAccessDeniedError(`${path}: permission denied`, { cause: err })
  if (code === 'ENOSPC') return new OriginError(`${path}: no space left on the origin's disk; nothing was stored`, { cause: err })
  const why = (err as Error | null)?.message?.split('\n')[0] ?? String(err)
  return new OriginError(`${path}: ${why}`, { cause: err, retryable: typeof code === 'string' && TRANSIENT.has(code) })
}
