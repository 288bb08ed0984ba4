import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { bootstrapOf } from '../src/cluster/cluster.js'
import { runCli, tempDir } from './helpers/cli.js'
import { clusterUp } from './helpers/cluster.js'
import { seededBytes, sha256Ref } from './helpers/data.js'

/**
 * Beyond 8 nodes each node bootstraps from a few others only: the cluster must still come up as one
 * swarm, and a node that was not given the holder at start finds it (connections and the DHT).
 */
t.test('12 nodes on loopback, each bootstrapped from a few: up, and an image reaches a node not given its holder', async t => {
  const dir = join(await tempDir(t, 'isw-pm-'), 'c')
  const { result, info } = await clusterUp(t, dir, ['--nodes', '12', '--log-level', 'warn'])
  t.equal(result.code, 0, result.stderr)
  if (info == null) return
  t.equal(info.nodes.length, 12, 'twelve nodes')
  const far = 6
  t.notOk(bootstrapOf(far, 12).includes(0) || bootstrapOf(0, 12).includes(far), 'node0 and node6 were not given each other at start')

  const bytes = seededBytes(3 * 1024 * 1024 + 11, 'partial-mesh')
  const file = join(dir, '..', 'image.img')
  await writeFile(file, bytes)
  t.equal((await runCli(['import', file, '-q', '--api', info.nodes[0].api])).code, 0, 'imported on node0')
  const out = join(dir, '..', 'got.img')
  const got = await runCli(['get', sha256Ref(bytes), '-o', out, '-q', '--api', info.nodes[far].api], { timeoutMs: 90_000 })
  t.equal(got.code, 0, got.stderr)
  t.ok(Buffer.from(await readFile(out)).equals(bytes), 'node6 wrote the image byte for byte')
})
