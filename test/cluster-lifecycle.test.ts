import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parseApiAddress } from '../src/api/address.js'
import { ApiClient } from '../src/api/client.js'
import { runCli, tempDir } from './helpers/cli.js'
import { alive, clusterStatus, clusterUp } from './helpers/cluster.js'
import { waitFor } from './helpers/failure.js'
import { seededBytes, sha256Ref } from './helpers/data.js'

const MiB = 1024 * 1024

// Daemons as separate processes (`imgswarm cluster up`), so that a holder can be killed for real.
t.test('a process cluster: preheat to every node, min replicas repaired after a holder is SIGKILLed', async t => {
  const dir = join(await tempDir(t, 'isw-lc-'), 'c')
  const { result, info } = await clusterUp(t, dir, ['--nodes', '4', '--replica-interval', '1', '--max-size', '256MiB', '--log-level', 'warn'])
  t.equal(result.code, 0, result.stderr)
  if (info == null) return
  const clients = info.nodes.map(n => new ApiClient(parseApiAddress(n.api)))
  const holders = async (ref: string): Promise<number[]> => {
    const held = await Promise.all(clients.map(async (c, i) => await c.list().then(l => l.some(r => r.ref === ref && r.state === 'available'), () => false) ? i : -1))
    return held.filter(i => i >= 0)
  }

  // Preheat: one image imported on node0, every node holds it afterwards.
  const warm = seededBytes(5 * MiB + 3, 'lifecycle-preheat')
  const warmFile = join(dir, '..', 'warm.img')
  await writeFile(warmFile, warm)
  t.equal((await runCli(['import', warmFile, '-q', '--api', info.nodes[0].api])).code, 0)
  const preheat = await runCli(['preheat', sha256Ref(warm), '--nodes', 'all', '--json', '--api', info.nodes[0].api], { timeoutMs: 120_000 })
  t.equal(preheat.code, 0, preheat.stderr)
  t.equal(JSON.parse(preheat.stdout).ok, true, 'the preheat reports every node done')
  t.same(await holders(sha256Ref(warm)), [0, 1, 2, 3], 'every node holds the preheated image')

  // Replicas: an image on node1 only, a policy of 2 copies set through node3.
  const bytes = seededBytes(4 * MiB + 5, 'lifecycle-replica')
  const file = join(dir, '..', 'replica.img')
  await writeFile(file, bytes)
  const ref = sha256Ref(bytes)
  t.equal((await runCli(['import', file, '-q', '--api', info.nodes[1].api])).code, 0)
  const set = await runCli(['replicas', ref, '--min', '2', '--api', info.nodes[3].api])
  t.equal(set.code, 0, set.stderr)
  t.ok(await waitFor(async () => (await holders(ref)).length >= 2, 60_000, 200), 'a second node took the image on')
  const before = await holders(ref)
  t.equal(before.length, 2, `exactly two copies (${before.join(', ')})`)

  // SIGKILL the holder that is not node1: the others find it gone and one of them takes its place.
  const victim = before.find(i => i !== 1)!
  const pid: number = (await clusterStatus(dir)).nodes[victim].pid
  process.kill(pid, 'SIGKILL')
  t.ok(await waitFor(async () => !alive(pid), 10_000, 200), `node${victim} is dead`)
  const live = clients.filter((_, i) => i !== victim)
  t.ok(await waitFor(async () => (await holders(ref)).filter(i => i !== victim).length >= 2, 90_000, 200), 'the live nodes hold two copies again')
  const after = (await holders(ref)).filter(i => i !== victim)
  t.equal(after.length, 2, `two copies among the live nodes (${after.join(', ')})`)
  const df = await live[0].df()
  t.equal(df.cap, 256 * MiB, 'the daemons run with the cap cluster up gave them')
})
