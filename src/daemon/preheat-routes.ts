import { parseImageNaming } from '../chunks/ref.js'
import { readJson, sendJson, type Route } from '../api/server.js'
import { ImageNotFoundError, UsageError } from '../errors.js'
import type { LevelStore } from '../store/level-store.js'
import type { Swarm } from '../swarm/swarm.js'

/**
 * The daemon's seeding routes:
 * - `POST /v1/preheat` `{ refs, nodes }` starts a preheat (202; `?wait=true` answers when it ends);
 * - `GET /v1/preheat/{id}` its status, per node;
 * - `POST /v1/replicas` `{ ref, min }` sets (min 0 clears) a cluster-wide minimum replica count;
 * - `GET /v1/replicas` the policies in force with what the last repair round saw.
 */
export function swarmRoutes (swarm: Swarm, store: LevelStore): Route[] {
  return [
    {
      method: 'POST',
      path: /^\/v1\/preheat$/,
      handle: async (req, res, _m, url) => {
        const body = await readJson(req)
        const { preheats } = swarm
        const status = await preheats.start(body.refs, body.nodes)
        if (url.searchParams.get('wait') === 'true') await preheats.wait(status.id)
        const now = preheats.status(status.id)!
        sendJson(res, now.done ? 200 : 202, now)
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/preheat\/([0-9a-f]+)$/,
      handle: async (_req, res, m) => {
        const status = swarm.preheats.status(m[1])
        if (status == null) throw new ImageNotFoundError(`no preheat ${m[1]} (finished ones are forgotten after 200 newer ones)`)
        sendJson(res, 200, status)
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/replicas$/,
      handle: async (req, res) => {
        const body = await readJson(req)
        if (typeof body.ref !== 'string' || typeof body.min !== 'number') throw new UsageError('POST /v1/replicas takes { "ref": REF, "min": R } (R 0 clears the policy)')
        const hex = await imageHex(store, body.ref)
        sendJson(res, 200, await swarm.replicas.set(hex, body.min))
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/replicas$/,
      handle: async (_req, res) => {
        const { replicas, repair } = swarm
        sendJson(res, 200, replicas.active().map(p => {
          const seen = repair.state(p.image)
          return { ...p, ref: `sha256:${p.image}`, ...(seen != null && seen.min === p.min ? { holders: seen.holders, checked: seen.checked } : {}) }
        }))
      }
    }
  ]
}

/**
 * The sha256 a policy is kept under (its DHT key): a full digest as given, a prefix, a manifest CID or
 * a name through the images stored here.
 */
async function imageHex (store: LevelStore, text: string): Promise<string> {
  const ref = parseImageNaming(text)
  if (ref.kind === 'digest') return ref.hex
  try {
    return (await store.resolve(text)).ref.slice(7)
  } catch (err) {
    if (err instanceof ImageNotFoundError) throw new UsageError(`${text} matches no image stored on this node; name the image by its full sha256`)
    throw err
  }
}
