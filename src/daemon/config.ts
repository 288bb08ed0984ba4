import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { UsageError } from '../errors.js'
import { DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER } from '../cache/evictor.js'
import { describe } from '../util/format.js'
import { LOG_LEVELS, type LogLevel } from '../util/log.js'
import { parseRate, parseSizeLimit, type SizeLimit } from '../util/units.js'

/** Everything a daemon (or an in-process node doing one fetch) is configured with. */
export interface NodeConfig {
  data: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  /** Peers to dial at start, each `/ip4/…/tcp/…/p2p/ID`. */
  bootstrap: string[]
  mdns: boolean
  /** The object store: file:///dir, http(s)://…, s3://bucket/prefix?endpoint=…, or a plug-in module. */
  origin?: string
  /** Where the local API listens: HOST:PORT, http://HOST:PORT or unix:PATH. */
  api: string
  /** A libp2p pre-shared key file (pnet): only nodes with the same key connect. */
  swarmKey?: string
  /** When non-empty, only these peer IDs may connect. */
  allowPeers: string[]
  logLevel: LogLevel
  /** The store's size cap (bytes, or a percentage of the data dir's disk); none when absent. */
  maxSize?: SizeLimit
  /** Eviction runs above `highWater` × cap down to `lowWater` × cap (defaults 0.9 and 0.8). */
  highWater?: number
  lowWater?: number
  /** How long after its last access an image may not be evicted, in ms (default 60 s). */
  evictionGraceMs?: number
  /** Period of the replica repair rounds and policy anti-entropy, in ms (`--replica-interval` seconds). Default 30 s. */
  replicaIntervalMs?: number
  /** Members of this group (name or gid) may use the local API without a token; the unix socket is theirs too. */
  apiGroup?: string
  /** The API token's file: default `<data>/api.token` (made when missing); required for an API beyond loopback. */
  apiTokenFile?: string
  /** PEM certificate and key: the API serves HTTPS. */
  apiTlsCert?: string
  apiTlsKey?: string
  /** Directories that `POST /v1/images?path=` may import from; none by default. */
  importDirs: string[]
  /** Origins besides `origin` that API callers may publish to. */
  publishOrigins: string[]
  /** Listen beyond loopback with neither a swarm key nor an allow-list: the operator's explicit choice. */
  open?: boolean
  /** With neither a swarm key nor an allow-list, still take preheat requests and replica policies from any peer. */
  openRequests?: boolean
  /** Bytes a second served to all peers together (`--max-upload-rate`); none when absent. */
  maxUploadRate?: number
  /** Bytes a second read from the origin by all fetches together (`--max-origin-rate`); none when absent. */
  maxOriginRate?: number
}

export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/4001']
export const DEFAULT_API = '127.0.0.1:7480'

type Source = Partial<Record<keyof NodeConfig, unknown>>

/** Config keys, their `IMGSWARM_*` variable, and how to read a value from text. */
const KEYS: Array<{ key: keyof NodeConfig, env: string, kind: 'string' | 'list' | 'bool' }> = [
  { key: 'listen', env: 'IMGSWARM_LISTEN', kind: 'list' },
  { key: 'bootstrap', env: 'IMGSWARM_BOOTSTRAP', kind: 'list' },
  { key: 'mdns', env: 'IMGSWARM_MDNS', kind: 'bool' },
  { key: 'origin', env: 'IMGSWARM_ORIGIN', kind: 'string' },
  { key: 'api', env: 'IMGSWARM_API', kind: 'string' },
  { key: 'swarmKey', env: 'IMGSWARM_SWARM_KEY', kind: 'string' },
  { key: 'allowPeers', env: 'IMGSWARM_ALLOW_PEER', kind: 'list' },
  { key: 'logLevel', env: 'IMGSWARM_LOG_LEVEL', kind: 'string' },
  { key: 'maxSize', env: 'IMGSWARM_MAX_SIZE', kind: 'string' },
  { key: 'highWater', env: 'IMGSWARM_HIGH_WATER', kind: 'string' },
  { key: 'lowWater', env: 'IMGSWARM_LOW_WATER', kind: 'string' },
  { key: 'evictionGraceMs', env: 'IMGSWARM_EVICTION_GRACE_MS', kind: 'string' },
  { key: 'replicaIntervalMs', env: 'IMGSWARM_REPLICA_INTERVAL_MS', kind: 'string' },
  { key: 'apiGroup', env: 'IMGSWARM_API_GROUP', kind: 'string' },
  { key: 'apiTokenFile', env: 'IMGSWARM_API_TOKEN_FILE', kind: 'string' },
  { key: 'apiTlsCert', env: 'IMGSWARM_API_TLS_CERT', kind: 'string' },
  { key: 'apiTlsKey', env: 'IMGSWARM_API_TLS_KEY', kind: 'string' },
  { key: 'importDirs', env: 'IMGSWARM_IMPORT_DIR', kind: 'list' },
  { key: 'publishOrigins', env: 'IMGSWARM_PUBLISH_ORIGIN', kind: 'list' },
  { key: 'open', env: 'IMGSWARM_OPEN', kind: 'bool' },
  { key: 'openRequests', env: 'IMGSWARM_OPEN_REQUESTS', kind: 'bool' },
  { key: 'maxUploadRate', env: 'IMGSWARM_MAX_UPLOAD_RATE', kind: 'string' },
  { key: 'maxOriginRate', env: 'IMGSWARM_MAX_ORIGIN_RATE', kind: 'string' }
]

/** A watermark as a share of the cap: `0.9`, `90%`, or a JSON number. */
function share (v: unknown, name: string, fallback: number): number {
  if (v == null) return fallback
  // Checked before String(v), which throws for a JSON object with a `toString` key.
  if (typeof v !== 'number' && typeof v !== 'string') throw new UsageError(`${name} must be a share of the cap such as 0.9 or 90%`)
  const text = String(v).trim()
  const n = text.endsWith('%') ? Number(text.slice(0, -1)) / 100 : Number(text)
  if (!(n > 0 && n <= 1)) throw new UsageError(`${name} must be a share of the cap above 0 and at most 1 (or 100%), not "${text}"`)
  return n
}

function fromEnv (env: NodeJS.ProcessEnv): Source {
  const out: Source = {}
  for (const { key, env: name, kind } of KEYS) {
    const v = env[name]
    if (v == null || v === '') continue
    out[key] = kind === 'list' ? v.split(',').map(s => s.trim()).filter(s => s !== '') : kind === 'bool' ? /^(1|true|yes|on)$/i.test(v) : v
  }
  return out
}

/**
 * Reads the config file: JSON with the same keys as the flags in camelCase
 * (`{ "listen": […], "bootstrap": […], "origin": "s3://…", "api": "unix:/run/imgswarm.sock" }`).
 */
async function fromFile (path: string, required: boolean): Promise<Source> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new UsageError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`config file ${path} is not valid JSON: ${(err as Error).message}`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`config file ${path} must hold a JSON object`)
  const known = new Set<string>([...KEYS.map(k => k.key), 'data'])
  for (const k of Object.keys(parsed)) if (!known.has(k)) throw new UsageError(`config file ${path}: unknown key "${k}" (known: ${[...known].join(', ')})`)
  return parsed as Source
}

/**
 * Merges flags over `IMGSWARM_*` variables over the config file over defaults. The config file is
 * `--config FILE`, `IMGSWARM_CONFIG`, or `<data>/config.json` when it exists.
 */
export async function loadConfig (flags: Source & { config?: string }, env: NodeJS.ProcessEnv, data: string): Promise<NodeConfig> {
  const explicit = flags.config ?? env.IMGSWARM_CONFIG
  const file = await fromFile(explicit ?? join(data, 'config.json'), explicit != null)
  const merged: Source = { ...file, ...fromEnv(env), ...stripUndefined(flags) }
  const list = (v: unknown, name: string): string[] => {
    if (v == null) return []
    if (!Array.isArray(v) || !v.every(s => typeof s === 'string')) throw new UsageError(`${name} must be a list of strings`)
    return v
  }
  const str = (v: unknown, name: string): string | undefined => {
    if (v == null) return undefined
    if (typeof v !== 'string') throw new UsageError(`${name} must be a string`)
    return v
  }
  const logLevel = str(merged.logLevel, 'logLevel') ?? 'info'
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new UsageError(`log level must be one of ${LOG_LEVELS.join(', ')}, not "${logLevel}"`)
  const listen = list(merged.listen, 'listen')
  if (merged.maxSize != null && typeof merged.maxSize !== 'string' && typeof merged.maxSize !== 'number') throw new UsageError('maxSize must be a size such as "10GiB" or "80%", or a number of bytes')
  const maxSize = merged.maxSize != null ? parseSizeLimit(String(merged.maxSize)) : undefined
  const highWater = share(merged.highWater, 'highWater', DEFAULT_HIGH_WATER)
  const lowWater = share(merged.lowWater, 'lowWater', DEFAULT_LOW_WATER)
  if (lowWater >= highWater) throw new UsageError(`the low watermark (${lowWater}) must be below the high one (${highWater})`)
  return {
    data,
    listen: listen.length > 0 ? listen : DEFAULT_LISTEN,
    bootstrap: list(merged.bootstrap, 'bootstrap'),
    mdns: merged.mdns === true,
    origin: str(merged.origin, 'origin'),
    api: str(merged.api, 'api') ?? DEFAULT_API,
    swarmKey: str(merged.swarmKey, 'swarmKey'),
    allowPeers: list(merged.allowPeers, 'allowPeers'),
    logLevel: logLevel as LogLevel,
    maxSize,
    highWater,
    lowWater,
    evictionGraceMs: millis(merged.evictionGraceMs, 'evictionGraceMs', 0),
    replicaIntervalMs: millis(merged.replicaIntervalMs, 'replicaIntervalMs', 100),
    apiGroup: str(merged.apiGroup, 'apiGroup'),
    apiTokenFile: str(merged.apiTokenFile, 'apiTokenFile'),
    apiTlsCert: str(merged.apiTlsCert, 'apiTlsCert'),
    apiTlsKey: str(merged.apiTlsKey, 'apiTlsKey'),
    importDirs: list(merged.importDirs, 'importDirs'),
    publishOrigins: list(merged.publishOrigins, 'publishOrigins'),
    open: merged.open === true,
    openRequests: merged.openRequests === true,
    maxUploadRate: merged.maxUploadRate != null ? parseRate(String(merged.maxUploadRate)) : undefined,
    maxOriginRate: merged.maxOriginRate != null ? parseRate(String(merged.maxOriginRate)) : undefined
  }
}

/** Milliseconds from a number or numeric text, from `min` up to a day. */
function millis (v: unknown, name: string, min: number): number | undefined {
  if (v == null) return undefined
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN
  if (!Number.isFinite(n) || n < min || n > 86_400_000) throw new UsageError(`${name} must be from ${min} to 86400000 (ms), not "${describe(v)}"`)
  return Math.round(n)
}

function stripUndefined (o: Record<string, unknown>): Source {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || k === 'config') continue
    if (Array.isArray(v) && v.length === 0) continue
    out[k] = v
  }
  return out as Source
}
