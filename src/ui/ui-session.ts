import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

/** How long the URL that `imgswarm ui` prints lets a browser in. */
export const LOGIN_TTL_MS = 15 * 60_000
/** How long the cookie that the URL sets keeps the browser in. */
export const SESSION_TTL_MS = 12 * 3600_000

export const COOKIE_NAME = 'imgswarm_ui'

/**
 * Short-lived, signed grants to the read-only cluster page. `imgswarm ui` asks the API (with its
 * usual access rules) for a login token and prints a URL carrying it; opening the URL trades it for
 * a session cookie scoped to `/ui/`. Both are `<kind>.<expiry ms>.<HMAC>` under a key made at daemon
 * start and never stored, so a restart ends every grant. Neither grants anything beyond `/ui/`.
 */
export class UiSessions {
  private readonly key = randomBytes(32)

  /** A login token, valid for {@link LOGIN_TTL_MS}. */
  loginToken (now = Date.now()): { token: string, expires: number } {
    const expires = now + LOGIN_TTL_MS
    return { token: this.sign('login', expires), expires }
  }

  /** The Set-Cookie header value of a new session. */
  sessionCookie (secure: boolean, now = Date.now()): string {
    const expires = now + SESSION_TTL_MS
    return `${COOKIE_NAME}=${this.sign('session', expires)}; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(SESSION_TTL_MS / 1000)}${secure ? '; Secure' : ''}`
  }

  validLogin (token: string | null | undefined, now = Date.now()): boolean {
    return token != null && this.valid('login', token, now)
  }

  /** Whether the request carries a live session cookie. */
  hasSession (req: IncomingMessage, now = Date.now()): boolean {
    const cookie = req.headers.cookie
    if (cookie == null) return false
    for (const part of cookie.split(';')) {
      const [name, ...rest] = part.trim().split('=')
      if (name === COOKIE_NAME && this.valid('session', rest.join('='), now)) return true
    }
    return false
  }

  private sign (kind: string, expires: number): string {
    return `${kind}.${expires}.${this.mac(`${kind}.${expires}`)}`
  }

  private valid (kind: string, token: string, now: number): boolean {
    const m = /^([a-z]+)\.(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(token)
    if (m == null || m[1] !== kind || Number(m[2]) < now) return false
    const want = Buffer.from(this.mac(`${m[1]}.${m[2]}`))
    const got = Buffer.from(m[3])
    return want.length === got.length && timingSafeEqual(want, got)
  }

  private mac (text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url')
  }
}
