import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { open, readFile, unlink } from 'node:fs/promises'
import { OperatorKeyError, hasSystemCode } from '../errors.js'

/** Signs a bundle's payload. The private key stays inside; only the raw public key is shown. */
export interface BundleSigner {
  /** The 32-byte raw Ed25519 public key that goes into the bundle's signature envelope. */
  readonly publicKey: Uint8Array
  sign: (payload: Uint8Array) => Uint8Array
}

/** How a key is named to operators and in the API's `trust` parameter: its raw 32 bytes in base64url. */
export function keyFingerprint (publicKey: Uint8Array): string {
  return Buffer.from(publicKey).toString('base64url')
}

/** The raw 32-byte key inside an Ed25519 key object (private or public). */
export function rawPublicKey (key: KeyObject): Uint8Array {
  const jwk = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' })
  return new Uint8Array(Buffer.from(String(jwk.x), 'base64url'))
}

/** An Ed25519 public key object for raw bytes; throws OperatorKeyError for anything but 32 bytes. */
export function publicKeyFromRaw (raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new OperatorKeyError(`an Ed25519 public key is 32 bytes, not ${raw.length}`)
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' })
}

/** A signer for an Ed25519 private key object. */
export function signerOf (privateKey: KeyObject): BundleSigner {
  return {
    publicKey: rawPublicKey(privateKey),
    sign: payload => new Uint8Array(sign(null, payload, privateKey))
  }
}

export interface GeneratedKey {
  privatePath: string
  publicPath: string
  publicKey: Uint8Array
}

/**
 * Makes a new operator key: `path` (PKCS8 PEM, mode 0600) and `path.pub` (SPKI PEM). Neither file may
 * exist: overwriting a key would orphan every bundle signed with it, so that is left to the operator.
 */
export async function generateOperatorKey (path: string): Promise<GeneratedKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const publicPath = `${path}.pub`
  // Exclusive creation ('wx') is the check: no window between a test for existence and the write.
  await writeNew(path, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600)
  try {
    await writeNew(publicPath, publicKey.export({ type: 'spki', format: 'pem' }) as string, 0o644)
  } catch (err) {
    await unlink(path).catch(() => {})
    throw err
  }
  return { privatePath: path, publicPath, publicKey: rawPublicKey(publicKey) }
}

async function writeNew (path: string, text: string, mode: number): Promise<void> {
  let fh
  try {
    fh = await open(path, 'wx', mode)
  } catch (err) {
    if (hasSystemCode(err, 'EEXIST')) throw new OperatorKeyError(`${path} exists already; refusing to overwrite a key (choose another path, or remove it yourself)`, { cause: err })
    throw new OperatorKeyError(`cannot create ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    await fh.writeFile(text)
    await fh.sync()
  } catch (err) {
    await fh.close().catch(() => {})
    await unlink(path).catch(() => {})
    throw new OperatorKeyError(`cannot write ${path}: ${(err as Error).message}`, { cause: err })
  }
  await fh.close()
}

async function readKeyFile (path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    const why = hasSystemCode(err, 'ENOENT') ? 'no such file' : hasSystemCode(err, 'EACCES') ? 'permission denied' : (err as Error).message
    throw new OperatorKeyError(`cannot read key file ${path}: ${why}`, { cause: err })
  }
}

/** The signer for a private key file written by {@link generateOperatorKey}. */
export async function loadSigner (path: string): Promise<BundleSigner> {
  const text = await readKeyFile(path)
  let key: KeyObject
  try {
    key = createPrivateKey(text)
  } catch (err) {
    throw new OperatorKeyError(`${path} does not hold a private key in PEM (PKCS8) form`, { cause: err })
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new OperatorKeyError(`${path} holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`)
  return signerOf(key)
}

/** The raw public key in a `.pub` file (SPKI PEM), for a trust list. */
export async function loadPublicKey (path: string): Promise<Uint8Array> {
  const text = await readKeyFile(path)
  if (text.includes('PRIVATE KEY')) throw new OperatorKeyError(`${path} holds a private key; trust the public key (${path}.pub) instead`)
  let key: KeyObject
  try {
    key = createPublicKey(text)
  } catch (err) {
    throw new OperatorKeyError(`${path} does not hold a public key in PEM (SPKI) form`, { cause: err })
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new OperatorKeyError(`${path} holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`)
  return rawPublicKey(key)
}
