import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseApiAddress } from '../api/address.js'
import { API_TOKEN_FILE, readApiToken } from '../api/api-token.js'
import { ApiClient } from '../api/client.js'
import { DAEMON_FILE, type DaemonInfo } from '../daemon/daemon-file.js'
import { prepareDataDir } from '../daemon/data-dir-modes.js'
import { StoreLockedError, hasSystemCode } from '../errors.js'
import type { LocalNode } from '../local-node.js'
import type { ImageService } from '../service.js'

/** How a command reaches the images: the store in this process, or a running daemon's API. */
export type Connection =
  | { kind: 'local', service: LocalNode }
  | { kind: 'remote', service: ImageService, client: ApiClient }

/**
 * `--api ADDR` or `IMGSWARM_API` name a daemon to use. Otherwise the data dir is opened here; when a
 * daemon holds it, the command goes through that daemon's API (found in `<data>/daemon.json`).
 */
export async function connect (dataDir: string, api: string | undefined): Promise<Connection> {
  if (api != null && api !== '') {
    const client = new ApiClient(parseApiAddress(api))
    return { kind: 'remote', service: client, client }
  }
  try {
    await prepareDataDir(dataDir)
    const { LocalNode } = await import('../local-node.js') // the store's modules load only for commands that use it
    return { kind: 'local', service: await LocalNode.open({ dir: dataDir }) }
  } catch (err) {
    // A daemon holds the store, or it is the daemon's and this user may not open it (a member of the
    // API group): either way, the daemon's API is the way in.
    if (!(err instanceof StoreLockedError) && !hasSystemCode(err, 'EACCES')) throw err
    const info = await readFile(join(dataDir, DAEMON_FILE), 'utf8').then(t => JSON.parse(t) as DaemonInfo, () => undefined)
    if (info == null) throw err
    const client = await dataDirClient(dataDir, info.api)
    return { kind: 'remote', service: client, client }
  }
}

/**
 * The client of the daemon that holds `dataDir`, at `api`: it carries the data dir's API token when
 * this user may read it (and IMGSWARM_API_TOKEN does not name one), for callers the daemon does not
 * grant by their uid.
 */
export async function dataDirClient (dataDir: string, api: string): Promise<ApiClient> {
  const token = process.env.IMGSWARM_API_TOKEN ?? await readApiToken(join(dataDir, API_TOKEN_FILE))
  return new ApiClient(parseApiAddress(api), { token })
}
