import { randomBytes } from 'node:crypto'
import { chmod, link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { PeerIdentityError, hasSystemCode } from '../errors.js'

/** The key file's name in the data dir. */
export const PEER_KEY_FILE = 'peer.key'

/** A node's key pair and the PeerId derived from it. */
export interface PeerIdentity {
  privateKey: PrivateKey
  peerId: PeerId
  /** The key file it was loaded from or written to. */
  path: string
  /** True when the key was made by this call (the data dir had none). */
  created: boolean
}

/**
 * Loads the node's Ed25519 private key from `<dir>/peer.key`, or creates one there, so that the
 * PeerId stays the same across restarts (other peers' allow-lists and bootstrap lists name it).
 *
 * The file holds the key in libp2p's protobuf encoding (the bytes `privateKeyToProtobuf` gives, as in
 * a kubo config's `Identity.PrivKey` before base64), mode 0600. A new key is written to a temporary
 * file, synced, and hard-linked into place, so a crash never leaves a half-written key and two
 * processes starting at once end up with the same key. A key file readable by group or others is
 * tightened to 0600.
 *
 * @throws PeerIdentityError when the file cannot be read or written, or holds anything but an Ed25519 key
 */
export async function loadOrCreateIdentity (dir: string): Promise<PeerIdentity> {
  const path = join(dir, PEER_KEY_FILE)
  const existing = await readKeyFile(path)
  if (existing != null) return { ...existing, path, created: false }

  const privateKey = await generateKeyPair('Ed25519')
  const won = await writeKeyFile(dir, path, privateKeyToProtobuf(privateKey))
  if (!won) {
    // Another process created the key between our read and our link: use theirs.
    const theirs = await readKeyFile(path)
    if (theirs == null) throw new PeerIdentityError(`key file ${path} vanished while it was being created`)
    return { ...theirs, path, created: false }
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), path, created: true }
}

async function readKeyFile (path: string): Promise<{ privateKey: PrivateKey, peerId: PeerId } | null> {
  let bytes: Uint8Array
  try {
    const st = await stat(path)
    if (!st.isFile()) throw new PeerIdentityError(`key file ${path} is not a regular file`)
    if ((st.mode & 0o077) !== 0) await chmod(path, 0o600)
    bytes = await readFile(path)
  } catch (err) {
    if (err instanceof PeerIdentityError) throw err
    if (hasSystemCode(err, 'ENOENT')) return null
    throw new PeerIdentityError(`cannot read key file ${path}: ${(err as Error).message}`, { cause: err })
  }
  let privateKey: PrivateKey
  try {
    privateKey = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new PeerIdentityError(`key file ${path} does not hold a libp2p private key: ${(err as Error).message}`, { cause: err })
  }
  if (privateKey.type !== 'Ed25519') {
    throw new PeerIdentityError(`key file ${path} holds a ${privateKey.type} key; imgswarm uses Ed25519`)
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
}

/** Writes the key next to `path` and links it into place. False when `path` already existed. */
async function writeKeyFile (dir: string, path: string, bytes: Uint8Array): Promise<boolean> {
  const tmp = join(dir, `.${PEER_KEY_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(dir, { recursive: true })
    const fh = await open(tmp, 'wx', 0o600)
    try {
      await fh.writeFile(bytes)
      await fh.sync()
    } finally {
      await fh.close()
    }
    try {
      await link(tmp, path)
    } catch (err) {
      if (hasSystemCode(err, 'EEXIST')) return false
      throw err
    }
    await syncDir(dir)
    return true
  } catch (err) {
    throw new PeerIdentityError(`cannot write key file ${path}: ${(err as Error).message}`, { cause: err })
  } finally {
    await unlink(tmp).catch(() => {})
  }
}

/** Makes the new directory entry durable; not every file system lets a directory be opened for this. */
async function syncDir (dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r')
    try { await fh.sync() } finally { await fh.close() }
  } catch {}
}
