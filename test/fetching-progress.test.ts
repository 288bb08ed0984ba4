import t from 'tap'
import type { ImageDetails, ImageListing } from '../src/local-node.js'
import { rateLimitedOrigin } from '../src/origin/rate-limited-origin.js'
import { runCli } from './helpers/cli.js'
import { seededBytes } from './helpers/data.js'
import { originWith, startDaemon } from './helpers/daemons.js'
import { until } from './helpers/swarm.js'

const MiB = 1024 * 1024

t.test('ls and inspect of an image being fetched show the bytes received so far', async t => {
  const bytes = seededBytes(8 * MiB, 'so-far')
  const published = await originWith(t, [bytes])
  // 1 MiB/s: about 8 s to arrive, time enough to look at it on its way.
  const d = await startDaemon(t, { origin: rateLimitedOrigin(published.origin, MiB) })
  const ref = published.refs[0]
  const env = { IMGSWARM_DATA: d.dir }
  const started = await d.client.call<{ id: string }>('POST', '/v1/fetch', { refs: [ref] })
  t.ok(started.id, 'the fetch runs')

  let listed: ImageListing | undefined
  await until('ls shows bytes received', async () => {
    const images: ImageListing[] = JSON.parse((await runCli(['ls', '--json'], { env })).stdout)
    listed = images.find(r => r.ref === ref)
    return listed?.state === 'fetching' && (listed.received?.bytes ?? 0) > 0
  }, 20_000)
  t.ok(listed!.received!.bytes < bytes.length, 'part of the image, not all of it')
  t.equal(listed!.received!.bytes, listed!.received!.local + listed!.received!.peer + listed!.received!.origin, 'the total is the sum by source')
  t.ok(listed!.received!.origin > 0, 'from the origin')

  const details: ImageDetails = JSON.parse((await runCli(['inspect', ref], { env })).stdout)
  if (details.state === 'fetching') {
    t.ok((details.received?.bytes ?? 0) >= listed!.received!.bytes, 'inspect shows the bytes so far too, no fewer than before')
    t.type(details.received?.percent, 'number', 'and the share of the image')
  }
  const text = await runCli(['ls'], { env })
  t.equal(text.code, 0, text.stderr)
  t.match(text.stdout, new RegExp(`^${ref.slice(0, 19)}\\s.*\\s(fetching \\d+% \\([\\d.]+ [KM]i?B\\)|available)\\s`, 'm'), 'ls shows the share and bytes in the state column')
  await until('the fetch ends', async () => (await d.client.call<ImageDetails>('GET', `/v1/images/${ref}/info`)).state === 'available', 30_000)
  const done = await d.client.call<ImageDetails>('GET', `/v1/images/${ref}/info`)
  t.equal(done.received, undefined, 'an available image has its sources, no bytes so far')
})
