// The AWS SDK warns on every client that releases after January 2027 need Node 22; the version is pinned.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

import {
  CreateMultipartUploadCommand, ListMultipartUploadsCommand, PutObjectCommand, S3Client
} from '@aws-sdk/client-s3'
import t from 'tap'
import { OriginAccessDeniedError, OriginConfigError, OriginTimeoutError } from '../src/errors.js'
import { openOrigin } from '../src/origin/open-origin.js'
import { s3Origin } from '../src/origin/s3-origin.js'
import { seededBytes } from './helpers/data.js'
import { faultProxy, silentServer } from './helpers/origin-servers.js'
import { startSwift, swiftMissing, type Swift } from './helpers/swift.js'
import { collect, originSuite, sha256Hex } from './suites/origin.js'

const MIB = 1024 * 1024

t.test('s3: URLs it cannot use are OriginConfigError', async t => {
  t.throws(() => s3Origin('s3:///prefix'), OriginConfigError, 'no bucket')
  t.throws(() => s3Origin('s3://key:secret@bucket/prefix'), OriginConfigError, 'credentials in the URL')
  t.throws(() => s3Origin('s3://bucket/p?partSize=1024'), OriginConfigError, 'a part smaller than S3 allows')
  t.throws(() => s3Origin('s3://bucket/p?endpoint=not%20a%20url'), OriginConfigError, 'a malformed endpoint')
  t.throws(() => s3Origin('s3://bucket/p?bucket=x'), OriginConfigError, 'an unknown parameter')
  const o = s3Origin('s3://bucket/some/prefix/?endpoint=http://127.0.0.1:9&region=x&forcePathStyle=true')
  t.equal(o.url, 's3://bucket/some/prefix')
  await o.close?.()
})

const missing = swiftMissing()
t.test('s3 on a real S3 server (OpenStack Swift with s3api)', { skip: missing ?? false }, async t => {
  const swift: Swift = await startSwift()
  t.teardown(swift.stop)
  t.comment(`Swift started and answered an S3 PUT+GET in ${swift.startupMs} ms`)
  const raw = new S3Client({
    endpoint: swift.endpoint, region: swift.region, forcePathStyle: true, credentials: swift.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED'
  })
  t.teardown(() => raw.destroy())
  const putRaw = async (key: string, bytes: Uint8Array): Promise<void> => {
    await raw.send(new PutObjectCommand({ Bucket: swift.bucket, Key: key, Body: bytes }))
  }
  let run = 0

  // Every request goes through a TCP proxy that can cut a transfer mid-way.
  const proxy = await faultProxy(swift.port)
  t.teardown(proxy.close)

  originSuite(t, {
    name: 's3',
    setup: async tuning => {
      const prefix = `suite/${++run}`
      return {
        origin: s3Origin(`s3://${swift.bucket}/${prefix}?endpoint=${proxy.url}`, { ...tuning, credentials: swift.credentials, partSize: 5 * MIB }),
        put: async (hex, bytes) => { await putRaw(`${prefix}/sha256/${hex}`, bytes) },
        putManifest: async (hex, bytes) => { await putRaw(`${prefix}/sha256/${hex}.manifest`, bytes) },
        breakNextRead: bytes => proxy.breakAfter(bytes),
        // Three parts of 5, 5 and 1 MiB: the multipart path, with a short last part.
        writeSize: 11 * MIB + 3,
        teardown: async () => {}
      }
    }
  })

  const image = seededBytes(100_000, 's3-specific')
  const hex = sha256Hex(image)
  await putRaw(`auth/sha256/${hex}`, image)

  t.test('wrong credentials are refused with OriginAccessDeniedError', async t => {
    const wrongSecret = s3Origin(`s3://${swift.bucket}/auth?endpoint=${swift.endpoint}`, { credentials: { ...swift.credentials, secretAccessKey: 'wrong' }, retries: 0 })
    const unknownUser = s3Origin(`s3://${swift.bucket}/auth?endpoint=${swift.endpoint}`, { credentials: { accessKeyId: 'test:nobody', secretAccessKey: 'x' }, retries: 0 })
    t.teardown(async () => { await wrongSecret.close?.(); await unknownUser.close?.() })
    await t.rejects(wrongSecret.stat(hex), OriginAccessDeniedError, 'stat with a wrong secret')
    await t.rejects(collect(wrongSecret.read(hex)), { name: 'OriginAccessDeniedError', message: /SignatureDoesNotMatch|AccessDenied/ }, 'read with a wrong secret')
    await t.rejects(wrongSecret.write?.(sha256Hex(image), (async function * () { yield image })()) ?? Promise.reject(new Error('no write')), OriginAccessDeniedError, 'write with a wrong secret')
    await t.rejects(collect(unknownUser.read(hex)), OriginAccessDeniedError, 'an unknown access key')
    const right = s3Origin(`s3://${swift.bucket}/auth?endpoint=${swift.endpoint}`, { credentials: swift.credentials })
    t.teardown(async () => { await right.close?.() })
    t.ok((await collect(right.read(hex))).equals(image), 'the right ones work')
  })

  t.test('credentials come from the standard AWS environment when not given', async t => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, key: process.env.AWS_SECRET_ACCESS_KEY }
    process.env.AWS_ACCESS_KEY_ID = swift.credentials.accessKeyId
    process.env.AWS_SECRET_ACCESS_KEY = swift.credentials.secretAccessKey
    t.teardown(() => {
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID; else process.env.AWS_ACCESS_KEY_ID = saved.id
      if (saved.key === undefined) delete process.env.AWS_SECRET_ACCESS_KEY; else process.env.AWS_SECRET_ACCESS_KEY = saved.key
    })
    const origin = await openOrigin(`s3://${swift.bucket}/auth?endpoint=${encodeURIComponent(swift.endpoint)}&region=${swift.region}`)
    t.teardown(async () => { await origin.close?.() })
    t.ok((await collect(origin.read(hex, { offset: 99_990 }))).equals(image.subarray(99_990)))
  })

  t.test('a failed multipart upload is aborted, not left behind', async t => {
    const origin = s3Origin(`s3://${swift.bucket}/leftovers?endpoint=${swift.endpoint}`, { credentials: swift.credentials, partSize: 5 * MIB })
    t.teardown(async () => { await origin.close?.() })
    const data = seededBytes(12 * MIB, 'leftover')
    const wrong = sha256Hex(Buffer.from('not these bytes'))
    await t.rejects(origin.write?.(wrong, (async function * () { for (let o = 0; o < data.length; o += MIB) yield data.subarray(o, o + MIB) })()) ?? Promise.reject(new Error('no write')), { name: 'DigestMismatchError' })
    const uploads = await raw.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: 'leftovers/' }))
    t.same(uploads.Uploads ?? [], [], 'no multipart upload is pending')
    // The listing itself works: a started upload shows up.
    await raw.send(new CreateMultipartUploadCommand({ Bucket: swift.bucket, Key: 'leftovers/probe' }))
    t.equal((await raw.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: 'leftovers/' }))).Uploads?.length, 1, '(the check can see one)')
  })

  t.test('a missing bucket is an OriginError that says so', async t => {
    const origin = s3Origin(`s3://no-such-bucket-here/x?endpoint=${swift.endpoint}`, { credentials: swift.credentials, retries: 0 })
    t.teardown(async () => { await origin.close?.() })
    await t.rejects(collect(origin.read(hex)), { name: 'OriginError', message: /bucket does not exist/ })
  })
})

t.test('s3: an endpoint that never answers times out', async t => {
  const silent = await silentServer()
  t.teardown(silent.close)
  const origin = s3Origin(`s3://bucket/p?endpoint=${silent.url}`, { credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, timeoutMs: 300, retries: 1, retryDelayMs: 5 })
  t.teardown(async () => { await origin.close?.() })
  const start = Date.now()
  await t.rejects(origin.stat(sha256Hex(Buffer.from('x'))), OriginTimeoutError)
  await t.rejects(collect(origin.read(sha256Hex(Buffer.from('x')))), OriginTimeoutError)
  t.ok(Date.now() - start < 10_000, `bounded: ${Date.now() - start} ms`)
  const refused = s3Origin('s3://bucket/p?endpoint=http://127.0.0.1:1', { credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, retries: 1, retryDelayMs: 5 })
  await t.rejects(refused.stat(sha256Hex(Buffer.from('x'))), { name: 'OriginError', retryable: true }, 'connection refused is retryable, then reported')
  await refused.close?.()
})
