import { statSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { OriginConfigError } from '../errors.js'
import { fileOrigin, type FileOriginOptions } from './file-origin.js'
import { glanceOrigin, type GlanceOriginOptions } from './glance-origin.js'
import { httpOrigin, type HttpOriginOptions } from './http-origin.js'
import type { Origin, OriginFactory } from './origin.js'
import { s3Origin, type S3OriginOptions } from './s3-origin.js'

/** Options for {@link openOrigin}: those of every built-in backend (each takes what it knows), plus plug-ins. */
export interface OpenOriginOptions extends FileOriginOptions, HttpOriginOptions, S3OriginOptions, GlanceOriginOptions {
  /**
   * Plug-in modules by URL scheme: with `{ nbd: '/opt/imgswarm/nbd-origin.js' }`, `nbd://host/export`
   * is opened by that module's factory.
   */
  plugins?: Record<string, string>
  /** Directory that relative module paths are resolved from. Default: the current directory. */
  cwd?: string
}

const BUILT_IN: Record<string, (url: string, options: OpenOriginOptions) => Origin> = {
  file: fileOrigin,
  http: httpOrigin,
  https: httpOrigin,
  s3: s3Origin,
  'glance+http': glanceOrigin,
  'glance+https': glanceOrigin
}

const SCHEME = /^([a-z][a-z0-9+.-]*):/i

/**
 * Opens the origin an operator configured:
 * - `file:///dir`, `http(s)://host/base`, `s3://bucket/prefix?endpoint=…`, `glance+http(s)://host:port`:
 *   the built-in backends;
 * - `scheme://…` for a scheme listed in `options.plugins`: that plug-in module;
 * - a module path (`./my-origin.js`, `/opt/x/origin.js`) or package name, optionally followed by
 *   `?parameters`: that plug-in module.
 * A plug-in module default-exports an {@link OriginFactory}; it is called with the whole string
 * and the options.
 *
 * @example
 * const origin = await openOrigin(process.env.IMGSWARM_ORIGIN ?? 'file:///srv/images')
 */
export async function openOrigin (url: string, options: OpenOriginOptions = {}): Promise<Origin> {
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase()
  if (scheme !== undefined && scheme.length > 1) {
    const builtIn = BUILT_IN[scheme]
    if (builtIn !== undefined) return builtIn(url, options)
    const module = options.plugins?.[scheme]
    if (module === undefined) {
      throw new OriginConfigError(`no origin backend for "${scheme}:" (built in: ${Object.keys(BUILT_IN).join(', ')}; name a plug-in module for it in plugins.${scheme}, or give a module path)`)
    }
    return await loadPlugin(module, url, options)
  }
  return await loadPlugin(url.replace(/\?.*$/s, ''), url, options)
}

async function loadPlugin (module: string, url: string, options: OpenOriginOptions): Promise<Origin> {
  const isPath = module.startsWith('.') || isAbsolute(module)
  const specifier = isPath ? pathToFileURL(resolve(options.cwd ?? process.cwd(), module)).href : module
  let loaded: { default?: unknown }
  try {
    loaded = await import(specifier) as { default?: unknown }
  } catch (err) {
    const hint = isPath && isDirectory(specifier) ? ` (it is a directory: for a directory origin write ${specifier})` : ''
    throw new OriginConfigError(`cannot load origin plug-in ${module}: ${(err as Error).message?.split('\n')[0]}${hint}`, { cause: err })
  }
  const factory = loaded.default
  if (typeof factory !== 'function') throw new OriginConfigError(`origin plug-in ${module} has no default-exported factory function`)
  const origin = await (factory as OriginFactory)(url, options as Record<string, unknown>)
  checkOrigin(origin, module)
  return origin
}

/** Refuses a plug-in's answer that is not shaped like an Origin, before anything calls it. */
function checkOrigin (origin: unknown, module: string): asserts origin is Origin {
  const o = origin as Partial<Origin> | null | undefined
  const missing: string[] = []
  if (typeof o?.capabilities !== 'object' || o.capabilities === null) missing.push('capabilities')
  for (const m of ['stat', 'read', 'readManifest'] as const) if (typeof o?.[m] !== 'function') missing.push(m)
  if (o?.capabilities?.write === true) for (const m of ['write', 'writeManifest'] as const) if (typeof o[m] !== 'function') missing.push(m)
  if (missing.length > 0) throw new OriginConfigError(`origin plug-in ${module} returned an object without ${missing.join(', ')}`)
}

function isDirectory (fileUrl: string): boolean {
  try {
    return statSync(fileURLToPath(fileUrl)).isDirectory()
  } catch {
    return false
  }
}
