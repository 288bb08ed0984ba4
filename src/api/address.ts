import { UsageError } from '../errors.js'

/** Where an API listens or is reached: a TCP host and port, or a unix socket. */
export type ApiAddress =
  | { kind: 'tcp', host: string, port: number, tls?: boolean }
  | { kind: 'unix', path: string }

export const DEFAULT_API_PORT = 7480

/**
 * Parses `HOST:PORT`, `http://HOST:PORT`, `https://HOST:PORT` (a daemon serving TLS), `[::1]:PORT` or `unix:PATH`. A bare `:PORT` means 127.0.0.1:
 * the API listens on loopback unless an operator names another interface.
 */
export function parseApiAddress (text: string): ApiAddress {
  const s = text.trim()
  if (s.startsWith('unix:')) {
    const path = s.slice(5)
    if (path === '') throw new UsageError(`invalid API address "${text}": unix: needs a socket path`)
    return { kind: 'unix', path }
  }
  const tls = s.startsWith('https://')
  const hostPort = s.replace(/^https?:\/\//, '').replace(/\/$/, '')
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/[\]]*):(\d{1,5})$/.exec(hostPort)
  if (m == null || Number(m[2]) > 65535) {
    throw new UsageError(`invalid API address "${text}": expected HOST:PORT, http(s)://HOST:PORT or unix:PATH`)
  }
  const host = m[1] === '' ? '127.0.0.1' : m[1].replace(/^\[|\]$/g, '')
  return tls ? { kind: 'tcp', host, port: Number(m[2]), tls } : { kind: 'tcp', host, port: Number(m[2]) }
}

export function formatApiAddress (a: ApiAddress): string {
  if (a.kind === 'unix') return `unix:${a.path}`
  return `${a.tls === true ? 'https' : 'http'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
}

/** Whether an address is reachable only from this machine. */
export function isLocalOnly (a: ApiAddress): boolean {
  return a.kind === 'unix' || a.host === '127.0.0.1' || a.host === '::1' || a.host === 'localhost' || a.host.startsWith('127.')
}
