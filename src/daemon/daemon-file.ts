/** Written into the data dir while a daemon runs, so that CLI commands find its API. */
export const DAEMON_FILE = 'daemon.json'

/** What `daemon.json` holds. */
export interface DaemonInfo {
  pid: number
  api: string
  peerId: string
  multiaddrs: string[]
  /** The node's name (`--name`, else the host name). */
  name?: string
  /** The cluster page's address (no token: `imgswarm ui` prints one that lets a browser in). */
  ui?: string
}
