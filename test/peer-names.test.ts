import t from 'tap'
import type { PeerRow } from '../src/daemon/peer-names.js'
import { runCli } from './helpers/cli.js'
import { seededBytes, streamOf } from './helpers/data.js'
import { startDaemon } from './helpers/daemons.js'
import { holds, until } from './helpers/swarm.js'

t.test('peers, preheat and replicas show node names beside peer IDs, peers the listen addresses; ls shows replicas as held', async t => {
  const a = await startDaemon(t, { config: { name: 'alpha', replicaIntervalMs: 1000 } })
  const b = await startDaemon(t, { bootstrap: [a.addr], config: { name: 'beta', replicaIntervalMs: 1000 } })
  const aId = a.daemon.peer.peerId.toString()
  const bId = b.daemon.peer.peerId.toString()
  const aApi = ['--api', a.daemon.info().api]
  const bListen = b.addr.split('/p2p/')[0]

  let rows: PeerRow[] = []
  await until('A knows B by name', async () => {
    rows = JSON.parse((await runCli(['peers', '--json', ...aApi])).stdout)
    return rows.some(r => r.peerId === bId && r.name === 'beta')
  }, 20_000)
  const row = rows.find(r => r.peerId === bId)!
  t.ok(row.addrs.includes(bListen), `B's listen address ${bListen} is shown`)
  t.not(row.addr, bListen, 'not only the inbound connection\'s ephemeral port')
  const text = await runCli(['peers', ...aApi])
  t.equal(text.code, 0, text.stderr)
  t.match(text.stdout, /^PEER\s+NAME\s+LISTENING ON\s+DIRECTION$/m)
  t.match(text.stdout, new RegExp(`^${bId}\\s+beta\\s+\\S*${bListen.replace(/[/.]/g, '\\$&')}`, 'm'), 'peer ID, name and listen address on one line')

  const { record } = await a.client.importStream(streamOf(seededBytes(400_000, 'names')), { meta: { type: 'machine', name: 'n' } })
  const preheat = await runCli(['preheat', record.ref, ...aApi])
  t.equal(preheat.code, 0, preheat.stderr)
  t.match(preheat.stdout, `${aId} (alpha, this node)`, 'preheat names this node')
  t.match(preheat.stdout, `${bId} (beta)`, 'and the peer')

  const set = await runCli(['replicas', record.ref, '--min', '2', ...aApi])
  t.equal(set.code, 0, set.stderr)
  await until('B knows the policy', () => b.daemon.replicas.get(record.ref.slice(7))?.min === 2, 30_000)
  await until('B holds the image', async () => await holds(b, record.ref), 30_000)
  const list = await runCli(['replicas', '--api', b.daemon.info().api])
  t.equal(list.code, 0, list.stderr)
  t.match(list.stdout, `${aId} (alpha)`, 'replicas names the node that set the policy')
  const ls = await runCli(['ls'], { env: { IMGSWARM_DATA: b.dir } })
  t.equal(ls.code, 0, ls.stderr)
  t.match(ls.stdout, new RegExp(`^${record.ref.slice(0, 19)}\\s.*\\savailable\\s+replica\\s`, 'm'), 'ls on B shows the replica as held')
  const json = JSON.parse((await runCli(['ls', '--json'], { env: { IMGSWARM_DATA: b.dir } })).stdout)
  t.match(json, [{ ref: record.ref, replica: true }], 'ls --json says replica: true')
})
