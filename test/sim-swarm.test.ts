import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

const script = fileURLToPath(new URL('../bench/sim-swarm.js', import.meta.url))

t.test('sim:swarm --json: one JSON object on stdout, every node complete with the right chunks, at least one origin copy', async t => {
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--nodes', '20', '--image-mib', '4', '--seed', '3', '--json'], { timeout: 120_000 })
  const r = JSON.parse(stdout) as Record<string, unknown>
  for (const k of ['nodes', 'imageBytes', 'originBitsPerSecond', 'uploadBitsPerSecond', 'downloadBitsPerSecond', 'latencySeconds', 'lastNodeSeconds', 'p50Seconds', 'lowerBoundSeconds', 'originCopies', 'wallSeconds']) {
    t.type(r[k], 'number', k)
  }
  t.equal(r.nodes, 20)
  t.equal(r.imageBytes, 4 * 1024 * 1024)
  t.equal(r.originBitsPerSecond, 100e6, 'the defaults')
  t.equal(r.latencySeconds, 0.01)
  t.equal(r.nodesComplete, 20, 'every node holds every chunk, byte for byte')
  t.ok((r.originCopies as number) >= 1, 'the origin cannot send less than one copy')
  t.ok((r.lastNodeSeconds as number) >= (r.lowerBoundSeconds as number), 'no faster than the fluid bound')
  t.ok((r.p50Seconds as number) <= (r.lastNodeSeconds as number))
  // 4 MiB at 100 Mbit/s: T* = 0.34 s.
  t.ok(Math.abs((r.lowerBoundSeconds as number) - 4 * 1024 * 1024 * 8 / 100e6) < 0.001)
})

t.test('sim:swarm with late joiners and a node that dies: the survivors complete', async t => {
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--nodes', '12', '--image-mib', '2', '--join-spread-s', '2', '--die', '2', '--json'], { timeout: 120_000 })
  const r = JSON.parse(stdout) as Record<string, number>
  t.equal(r.died, 2)
  t.equal(r.nodesComplete, 10)
})

t.test('sim:swarm in a partial mesh (100 nodes, ~20 neighbours each): the candidates agree, so the origin sends about one copy', async t => {
  // Owned among each node's neighbours only, this swarm read 8.6 copies from the origin.
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--nodes', '100', '--image-mib', '4', '--json'], { timeout: 120_000 })
  const r = JSON.parse(stdout) as Record<string, number>
  t.equal(r.nodesComplete, 100)
  t.ok(r.originCopies >= 1 && r.originCopies <= 1.1, `origin copies ${r.originCopies}`)
})

t.test('sim:swarm in a partial mesh with nodes dying: their groups move to live candidates and the survivors complete', async t => {
  // Half the nodes die in the first 1.5 s, owners among them: their groups wait a stall timeout (5 s), not the starvation rule's 20 s.
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--nodes', '60', '--image-mib', '4', '--die', '30', '--die-within-s', '1.5', '--json'], { timeout: 120_000 })
  const r = JSON.parse(stdout) as Record<string, number>
  t.equal(r.died, 30)
  t.equal(r.nodesComplete, 30)
  t.ok(r.lastNodeSeconds < 20, `last node at ${r.lastNodeSeconds} s`)
  t.ok(r.originCopies < 1.5, `origin copies ${r.originCopies}: a dead owner's group is read again by one node, not by all`)
})
