import { UsageError } from '../errors.js'
import type { ApiBackend, Route } from './server.js'
import { readJson, sendJson } from './server.js'
import { write } from './image-stream.js'

/** Raw Ed25519 public keys from `?trust=<base64url>` parameters (what keyFingerprint prints). */
function trustParams (url: URL): Uint8Array[] | undefined {
  const values = url.searchParams.getAll('trust')
  if (values.length === 0) return undefined
  return values.map(v => {
    const raw = Buffer.from(v, 'base64url')
    if (raw.length !== 32 || raw.toString('base64url') !== v) throw new UsageError(`trust=${v} is not a base64url Ed25519 public key (32 bytes)`)
    return new Uint8Array(raw)
  })
}

/**
 * Bundles through the API. `POST /v1/bundles` with `{ "refs": [...] }` streams an unsigned bundle
 * (clients sign it themselves: a private key never reaches the daemon); `POST /v1/bundles/import`
 * takes a bundle as the body, with `?trust=` once per trusted key.
 */
export function bundleRoutes (backend: ApiBackend): Route[] {
  const { local } = backend
  return [
    {
      method: 'POST',
      path: /^\/v1\/bundles$/,
      handle: async (req, res) => {
        const body = await readJson(req)
        if (!Array.isArray(body.refs) || body.refs.length === 0 || !body.refs.every((r: unknown) => typeof r === 'string')) {
          throw new UsageError('a bundle takes { "refs": [REF, …] } with at least one REF')
        }
        const controller = new AbortController()
        res.once('close', () => { controller.abort() })
        const bytes = local.bundle(body.refs as string[], { signal: controller.signal })
        try {
          // The first piece comes after the refs resolved: a wrong or unavailable ref still answers as JSON.
          let r = await bytes.next()
          res.writeHead(200, { 'content-type': 'application/vnd.ipld.car; version=1' })
          while (r.done !== true) {
            await write(res, r.value)
            r = await bytes.next()
          }
          res.end()
        } finally {
          await bytes.return(undefined as never)
        }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/bundles\/import$/,
      handle: async (req, res, _m, url) => {
        const result = await local.importBundle(req, { trust: trustParams(url) })
        for (const record of result.images) backend.onImported?.(record)
        sendJson(res, 201, result)
      }
    }
  ]
}
