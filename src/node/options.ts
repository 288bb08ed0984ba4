import { DEFAULT_GRACE_MS, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER } from '../cache/evictor.js'
import { DEFAULT_REPLICA_INTERVAL_MS } from '../swarm/defaults.js'
import { DEFAULT_PROFILE_WINDOW_MS } from '../serve/boot-recorder.js'
import { LOG_LEVELS, type LogLevel } from '../util/log.js'
import type { SizeLimit } from '../util/units.js'
import { addresses, bool, choice, duration, list, millis, rate, share, sizeLimit, string, type Unit } from './option-units.js'

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
  highWater: number
  lowWater: number
  /** How long after its last access an image may not be evicted, in ms (default 60 s). */
  evictionGraceMs: number
  /** Period of the replica repair rounds and policy anti-entropy, in ms (default 30 s). */
  replicaIntervalMs: number
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
  open: boolean
  /** With neither a swarm key nor an allow-list, still take preheat requests and replica policies from any peer. */
  openRequests: boolean
  /** Bytes a second served to all peers together; none when absent. */
  maxUploadRate?: number
  /** Bytes a second read from the origin by all fetches together; none when absent. */
  maxOriginRate?: number
  /** A file holding the Keystone token a `glance+http(s):` origin's own reads carry. */
  glanceTokenFile?: string
  /** Where images are served as NBD exports: `unix:PATH`, loopback `HOST:PORT` or `off`; `unix:<data>/nbd.sock` when absent. */
  nbd?: string
  /** How long after an image's first read (NBD, HTTP ranges) the chunks read are recorded as its boot profile, in ms; 0 records none. */
  bootProfileWindowMs: number
  /** The node's name, shown next to its peer ID; the host name when absent. */
  name?: string
  /** A loopback HOST:PORT for the cluster page when the API is a unix socket; none when absent. */
  ui?: string
}

/** What help and the README say about an option: its flag, variable, default and meaning. */
export interface OptionDoc {
  /** The flag without its dashes: `eviction-grace`. */
  flag: string
  /** Its `IMGSWARM_*` variable. */
  env: string
  /** The placeholder after the flag (`DURATION`, `FILE`); empty for a switch. */
  arg: string
  /** The default as help and the README's flag table show it. */
  defaultText: string
  /** One line for `daemon --help`. */
  help: string
}

type Key = Exclude<keyof NodeConfig, 'data'>
type Value<K extends Key> = Exclude<NodeConfig[K], undefined>

/** A field that NodeConfig requires has a default; an optional one says what its absence means. */
type DefaultOf<K extends Key> = undefined extends NodeConfig[K]
  ? { default?: undefined, defaultText: string }
  : { default: Value<K>, defaultText?: string }

export type Option<K extends Key = Key> = Omit<OptionDoc, 'defaultText' | 'arg'> & DefaultOf<K> & {
  /** The field of {@link NodeConfig} it sets. */
  key: K
  /** Its key in the JSON config file. */
  configKey: string
  unit: Unit<Value<K>>
  /** The placeholder after the flag when the unit's own (`TEXT`) says too little. */
  arg?: string
  /**
   * An older spelling that keeps working with its old unit, with a warning: the `_MS` variables and
   * `…Ms` config keys, which took milliseconds while the flag took seconds.
   */
  deprecated?: { env: string, configKey: string, unit: Unit<Value<K>> }
}

/** One entry, checked against NodeConfig: its unit reads, and its default is, the field's type. */
function option<K extends Key> (o: Option<K>): Option<K> {
  return o
}

/**
 * The daemon's options, in the order help shows them. Flags, `IMGSWARM_*` variables, the config
 * file's keys, the parsed config, its defaults and `daemon --help` are all made from this table;
 * test/options-readme.test.ts checks the README's flag table against it.
 */
export const OPTIONS = [
  option({ key: 'listen', flag: 'listen', env: 'IMGSWARM_LISTEN', configKey: 'listen', unit: addresses, arg: 'MULTIADDR', default: ['/ip4/0.0.0.0/tcp/4001'], help: 'where neighbours connect' }),
  option({ key: 'bootstrap', flag: 'bootstrap', env: 'IMGSWARM_BOOTSTRAP', configKey: 'bootstrap', unit: list, arg: 'MULTIADDR', default: [], help: 'neighbours to dial at start, each ending in /p2p/<peer id>; kept connected' }),
  option({ key: 'mdns', flag: 'mdns', env: 'IMGSWARM_MDNS', configKey: 'mdns', unit: bool, default: false, help: 'find neighbours on the LAN by multicast DNS' }),
  option({ key: 'origin', flag: 'origin', env: 'IMGSWARM_ORIGIN', configKey: 'origin', unit: string, arg: 'URL', defaultText: 'none', help: 'the object store: file:///dir, http(s)://…, s3://bucket/prefix?endpoint=…, glance+http(s)://HOST:PORT, or a plug-in module path' }),
  option({ key: 'glanceTokenFile', flag: 'glance-token-file', env: 'IMGSWARM_GLANCE_TOKEN_FILE', configKey: 'glanceTokenFile', unit: string, arg: 'FILE', defaultText: 'none', help: 'the Keystone token (re-read at each request) that a glance+ origin\'s own reads carry; callers of the Glance endpoint use theirs' }),
  option({ key: 'api', flag: 'api', env: 'IMGSWARM_API', configKey: 'api', unit: string, arg: 'ADDR', default: '127.0.0.1:7480', help: 'the local API: HOST:PORT, http://HOST:PORT or unix:PATH; loopback unless you name another interface' }),
  option({ key: 'swarmKey', flag: 'swarm-key', env: 'IMGSWARM_SWARM_KEY', configKey: 'swarmKey', unit: string, arg: 'FILE', defaultText: 'none', help: 'libp2p private network (pnet) key: only nodes with the same key connect' }),
  option({ key: 'allowPeers', flag: 'allow-peer', env: 'IMGSWARM_ALLOW_PEER', configKey: 'allowPeers', unit: list, arg: 'ID', default: [], help: 'only these peer IDs may connect, both ways' }),
  option({ key: 'open', flag: 'open', env: 'IMGSWARM_OPEN', configKey: 'open', unit: bool, default: false, help: 'listen beyond loopback with neither a swarm key nor an allow-list (refused without it)' }),
  option({ key: 'openRequests', flag: 'open-requests', env: 'IMGSWARM_OPEN_REQUESTS', configKey: 'openRequests', unit: bool, default: false, help: 'with --open, take preheat requests and replica policies from any peer too' }),
  option({ key: 'maxUploadRate', flag: 'max-upload-rate', env: 'IMGSWARM_MAX_UPLOAD_RATE', configKey: 'maxUploadRate', unit: rate, defaultText: 'off', help: 'bytes a second served to all peers together' }),
  option({ key: 'maxOriginRate', flag: 'max-origin-rate', env: 'IMGSWARM_MAX_ORIGIN_RATE', configKey: 'maxOriginRate', unit: rate, defaultText: 'off', help: 'bytes a second read from the origin by all fetches together' }),
  option({ key: 'logLevel', flag: 'log-level', env: 'IMGSWARM_LOG_LEVEL', configKey: 'logLevel', unit: choice(LOG_LEVELS), arg: 'L', default: 'info', help: 'error, warn, info or debug; logs are JSON lines on stderr' }),
  option({ key: 'maxSize', flag: 'max-size', env: 'IMGSWARM_MAX_SIZE', configKey: 'maxSize', unit: sizeLimit, defaultText: 'none', help: 'cap the store: 200GiB, 500G, bytes, or 40% of the data dir\'s disk; without it the store only grows' }),
  option({ key: 'highWater', flag: 'high-water', env: 'IMGSWARM_HIGH_WATER', configKey: 'highWater', unit: share, default: DEFAULT_HIGH_WATER, help: 'eviction of unpinned, unleased, unused images starts above this share of --max-size' }),
  option({ key: 'lowWater', flag: 'low-water', env: 'IMGSWARM_LOW_WATER', configKey: 'lowWater', unit: share, default: DEFAULT_LOW_WATER, help: 'and stops at this share; a fetch that cannot fit even then fails' }),
  option({
    key: 'evictionGraceMs',
    flag: 'eviction-grace',
    env: 'IMGSWARM_EVICTION_GRACE',
    configKey: 'evictionGrace',
    unit: duration(0),
    default: DEFAULT_GRACE_MS,
    help: 'an image fetched, imported or read this recently is not evicted',
    deprecated: { env: 'IMGSWARM_EVICTION_GRACE_MS', configKey: 'evictionGraceMs', unit: millis(0) }
  }),
  option({
    key: 'replicaIntervalMs',
    flag: 'replica-interval',
    env: 'IMGSWARM_REPLICA_INTERVAL',
    configKey: 'replicaInterval',
    unit: duration(100),
    default: DEFAULT_REPLICA_INTERVAL_MS,
    help: 'how often each node checks the replica policies (±25% jitter) and swaps policies with a random peer',
    deprecated: { env: 'IMGSWARM_REPLICA_INTERVAL_MS', configKey: 'replicaIntervalMs', unit: millis(100) }
  }),
  option({ key: 'nbd', flag: 'nbd', env: 'IMGSWARM_NBD', configKey: 'nbd', unit: string, arg: 'ADDR', defaultText: 'unix:<data>/nbd.sock', help: 'serve every image as a read-only NBD export named by its ref: unix:PATH, loopback HOST:PORT, or off' }),
  option({ key: 'bootProfileWindowMs', flag: 'boot-profile-window', env: 'IMGSWARM_BOOT_PROFILE_WINDOW', configKey: 'bootProfileWindow', unit: duration(0), default: DEFAULT_PROFILE_WINDOW_MS, help: 'record the chunks read this long after an image\'s first read (NBD, HTTP ranges) as its boot profile, fetched first by the next node; 0 records none' }),
  option({ key: 'apiGroup', flag: 'api-group', env: 'IMGSWARM_API_GROUP', configKey: 'apiGroup', unit: string, arg: 'GROUP', defaultText: 'none', help: 'members of this unix group may use the API with no token; the unix socket and api.token belong to it' }),
  option({ key: 'apiTokenFile', flag: 'api-token-file', env: 'IMGSWARM_API_TOKEN_FILE', configKey: 'apiTokenFile', unit: string, arg: 'FILE', defaultText: '<data>/api.token (made at start, 0640)', help: 'the token every other caller sends; required for an API beyond loopback' }),
  option({ key: 'apiTlsCert', flag: 'api-tls-cert', env: 'IMGSWARM_API_TLS_CERT', configKey: 'apiTlsCert', unit: string, arg: 'FILE', defaultText: 'none', help: 'serve the API over HTTPS with this PEM certificate (with --api-tls-key)' }),
  option({ key: 'apiTlsKey', flag: 'api-tls-key', env: 'IMGSWARM_API_TLS_KEY', configKey: 'apiTlsKey', unit: string, arg: 'FILE', defaultText: 'none', help: 'the PEM private key of --api-tls-cert' }),
  option({ key: 'importDirs', flag: 'import-dir', env: 'IMGSWARM_IMPORT_DIR', configKey: 'importDirs', unit: list, arg: 'DIR', default: [], help: 'directories that POST /v1/images?path= may import from; without it, path imports are refused' }),
  option({ key: 'name', flag: 'name', env: 'IMGSWARM_NAME', configKey: 'name', unit: string, arg: 'NAME', defaultText: 'the host name', help: 'this node\'s name, shown next to its peer ID (status, peers, preheat, the cluster page)' }),
  option({ key: 'ui', flag: 'ui', env: 'IMGSWARM_UI', configKey: 'ui', unit: string, arg: 'ADDR', defaultText: 'none (the page is on the API\'s address when that is TCP)', help: 'a loopback HOST:PORT for the cluster page when the API is a unix socket' }),
  option({ key: 'publishOrigins', flag: 'publish-origin', env: 'IMGSWARM_PUBLISH_ORIGIN', configKey: 'publishOrigins', unit: list, arg: 'URL', default: [], help: 'origins besides --origin that API callers may publish to' })
]

/** Any entry of the table, its value's type forgotten. */
export interface AnyOption extends Omit<OptionDoc, 'defaultText' | 'arg'> {
  key: Key
  configKey: string
  unit: Unit<any>
  arg?: string
  default?: unknown
  defaultText?: string
  deprecated?: { env: string, configKey: string, unit: Unit<any> }
}

type Covered = (typeof OPTIONS)[number]['key']
type Assert<T extends true> = T
/** Fails to compile when a field of NodeConfig has no entry in the table. */
export type EveryFieldHasAnOption = Assert<[Exclude<Key, Covered>] extends [never] ? true : false>

/** The table's entry for one field of NodeConfig. */
export function optionOf<K extends Key> (key: K): Option<K> {
  const found = OPTIONS.find(o => o.key === key)
  if (found == null) throw new Error(`no option sets ${key}`)
  return found as unknown as Option<K>
}

/** `--data` and `--config` are read before the table is: they say where the node and its file are. */
export const DATA_OPTION: OptionDoc = {
  flag: 'data',
  env: 'IMGSWARM_DATA',
  arg: 'DIR',
  defaultText: '/var/lib/imgswarm as root, else ~/.local/share/imgswarm',
  help: 'store, peer key (peer.key), daemon.json while running'
}

export const CONFIG_OPTION: OptionDoc = {
  flag: 'config',
  env: 'IMGSWARM_CONFIG',
  arg: 'FILE',
  defaultText: '<data>/config.json if present',
  help: 'a JSON object with the config keys above'
}

/** The placeholder shown after an option's flag. */
export function argOf (o: AnyOption): string {
  return o.arg ?? o.unit.metavar
}

/** The default as help and the README show it. */
export function defaultTextOf (o: AnyOption): string {
  return o.defaultText ?? o.unit.show(o.default)
}

/** Every option as help and the README describe it, `--data` and `--config` included. */
export function optionDocs (): OptionDoc[] {
  return [DATA_OPTION, ...OPTIONS.map(o => ({ flag: o.flag, env: o.env, arg: argOf(o), defaultText: defaultTextOf(o), help: o.help })), CONFIG_OPTION]
}
