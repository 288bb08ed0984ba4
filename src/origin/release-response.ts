import type { IncomingMessage } from 'node:http'

/**
 * Lets go of an HTTP answer the reader is done with: one that arrived whole is drained, so that its
 * keep-alive connection goes back to the pool for the next request; one still arriving is cut off.
 */
export function release (res: IncomingMessage): void {
  if (res.complete) res.resume()
  else res.destroy()
}
