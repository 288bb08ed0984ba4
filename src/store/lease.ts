import { UsageError } from '../errors.js'

/**
 * A holder's claim on an image (a running VM on its base image): a leased image is never evicted,
 * and `rm` refuses it without force. Stored with the image digest, so it survives a restart.
 */
export interface Lease {
  /** `sha256:<hex>` of the image. */
  ref: string
  holder: string
  /** ISO-8601 times; `expires` is absent for a lease that lasts until released. */
  created: string
  expires?: string
}

/** Holders are names chosen by the compute agent (an instance UUID, `nova:<uuid>`, a host name). */
export function checkHolder (holder: unknown): string {
  if (typeof holder !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(holder)) {
    throw new UsageError('a lease holder is 1 to 200 printable characters without spaces (an instance ID, for example)')
  }
  return holder
}

export function leaseExpired (lease: Lease, now = Date.now()): boolean {
  return lease.expires != null && Date.parse(lease.expires) <= now
}
