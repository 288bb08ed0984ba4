import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref } from './helpers/data.js'
import { countingOrigin, originWith, startDaemon, waitReady, type TestDaemon } from './helpers/daemons.js'

t.test('nodes fetching a new image at once read it from the origin about once between them', async t => {
  const size = 32 * 1024 * 1024
  const bytes = seededBytes(size, 'swarm')
  const { origin: inner, refs: [ref] } = await originWith(t, [bytes])
  const { origin, counts } = countingOrigin(inner)
  const nodes: TestDaemon[] = []
  for (let i = 0; i < 4; i++) {
    // A full mesh: each node bootstraps to every earlier one.
    const d = await startDaemon(t, { origin, bootstrap: nodes.map(n => n.addr) })
    nodes.push(d)
  }
  for (const d of nodes) await waitReady(d)
  const results = await Promise.all(nodes.map(async d => await d.client.call<any>('POST', '/v1/fetch?wait=true', { refs: [ref] })))
  for (const [i, r] of results.entries()) t.equal(r.ok, true, `node ${i}: ${String(r.images[0].error ?? 'ok')}`)
  const copies = counts.bytes / size
  t.ok(copies <= 1.5, `the origin sent ${copies.toFixed(2)} copies of the image for 4 nodes`)
  const peerBytes = results.reduce((n, r) => n + r.images[0].bytes.peer, 0)
  t.ok(peerBytes >= 2 * size, `${(peerBytes / size).toFixed(2)} copies moved between peers`)
  const dir = await tempDir(t)
  for (const [i, d] of nodes.entries()) {
    await d.client.export(ref, join(dir, `n${i}`))
    t.equal(sha256Ref(await readFile(join(dir, `n${i}`))), ref, `node ${i} holds the exact image`)
  }
})
