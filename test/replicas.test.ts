import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { REPLICAS_FILE, ReplicaPolicies, checkPolicy, type ReplicaPolicy } from '../src/swarm/replica-policies.js'
import { rendezvousRank } from '../src/swarm/rank.js'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref, streamOf } from './helpers/data.js'
import { startDaemon, type TestDaemon } from './helpers/daemons.js'
import { holds, restartDaemon, startMesh, until } from './helpers/swarm.js'

const FAST = { replicaIntervalMs: 1000 }

async function holders (nodes: TestDaemon[], ref: string): Promise<TestDaemon[]> {
  const held = await Promise.all(nodes.map(async d => await holds(d, ref)))
  return nodes.filter((_, i) => held[i])
}

const idOf = (d: TestDaemon): string => d.daemon.peer.peerId.toString()

t.test('min 2 on a 4-node cluster: the rendezvous-first non-holder takes it on, only it; a stopped holder is replaced', async t => {
  const nodes = await startMesh(t, 4, { config: FAST })
  const [a, b] = nodes
  // An image for which A, the first holder, is not the first in rank among the non-holders once it
  // drops the image (below): then only the holds check can get the replica back. Peer IDs are new
  // each run, so the image is picked to fit (two in three fit).
  let bytes!: Buffer
  for (let i = 0; bytes == null; i++) {
    const candidate = seededBytes(6 * 1024 * 1024, `replicas-${i}`)
    const h = sha256Ref(candidate).slice(7)
    const [, ...others] = rendezvousRank(h, nodes.slice(1).map(idOf))
    if (rendezvousRank(h, [...others, idOf(a)])[0] !== idOf(a)) bytes = candidate
  }
  // No origin anywhere: every replica comes from a peer.
  const { record } = await a.client.importStream(streamOf(bytes), { meta: { type: 'machine', name: 'r' } })
  const ref = record.ref
  const hex = ref.slice(7)
  const res = await runCli(['replicas', ref, '--min', '2', '--api', b.daemon.info().api])
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, `${ref} min 2`)

  await until('every node knows the policy', () => nodes.every(d => d.daemon.replicas.get(hex)?.min === 2), 30_000)
  await until('two nodes hold the image', async () => (await holders(nodes, ref)).length >= 2)
  const expected = rendezvousRank(hex, nodes.filter(d => d !== a).map(idOf))[0]
  const held = await holders(nodes, ref)
  t.same(held.map(idOf).sort(), [idOf(a), expected].sort(), 'A and the first non-holder in rendezvous order hold it')
  // Give the loop several more rounds: nobody else must step in.
  await until('a few more repair rounds', () => nodes.every(d => {
    const s = d.daemon.swarm.repair.state(hex)
    return s != null && Date.parse(s.checked) > Date.now() - 1500 && s.holders.length === 2
  }))
  await new Promise(resolve => setTimeout(resolve, 3000))
  t.equal((await holders(nodes, ref)).length, 2, 'still exactly two holders: no stampede')
  for (const d of nodes) t.equal(d.daemon.replicas.protects(hex), true, 'protects() is true (the policy is in force on every node)')
  const metrics = await b.client.send('GET', '/metrics')
  let text = ''
  for await (const piece of metrics) text += String(piece)
  t.match(text, /^imgswarm_replica_policies 1$/m, 'the policy shows in the metrics')
  t.match(text, /^imgswarm_replica_policies_short 0$/m, 'and it is not short')

  const list = await runCli(['replicas', '--json', '--api', nodes[3].daemon.info().api])
  t.equal(list.code, 0, list.stderr)
  const listed = JSON.parse(list.stdout) as Array<ReplicaPolicy & { holders?: string[] }>
  t.equal(listed.length, 1)
  t.match(listed[0], { image: hex, min: 2, by: idOf(b) })
  t.equal(listed[0].holders?.length, 2, 'the listing shows the live holders the last round saw')

  // A removes the image but stays up. Its DHT provider record stays too; the others must not count
  // it (it no longer confirms), so the first in rank among the non-holders, not A, takes it on.
  await a.client.remove(ref, { force: true })
  t.notOk(await holds(a, ref), 'A no longer holds the image')
  const taker = rendezvousRank(hex, nodes.filter(d => idOf(d) !== expected).map(idOf))[0]
  t.not(taker, idOf(a), 'A is not the one to fetch it again')
  await until('the removed replica is replaced', async () => (await holders(nodes, ref)).length >= 2)
  t.same((await holders(nodes, ref)).map(idOf).sort(), [expected, taker].sort(), 'the first non-holder in rank took it on')

  // Stop a holder: the next in rank among the live non-holders replaces it.
  const heldBefore = await holders(nodes, ref)
  const gone = heldBefore.find(d => d !== a) ?? heldBefore[0]
  await gone.daemon.stop()
  const rest = nodes.filter(d => d !== gone)
  const next = rendezvousRank(hex, rest.filter(d => !heldBefore.includes(d)).map(idOf))[0]
  await until('the replica is repaired on the live nodes', async () => (await holders(rest, ref)).length >= 2)
  t.same((await holders(rest, ref)).map(idOf).sort(), [...heldBefore.filter(d => d !== gone).map(idOf), next].sort(), 'the next in rank took it on')

  // Clearing spreads, and the image is no longer protected anywhere.
  const clear = await runCli(['replicas', ref, '--clear', '--api', rest[1].daemon.info().api])
  t.equal(clear.code, 0, clear.stderr)
  await until('every live node knows the policy is cleared', () => rest.every(d => d.daemon.replicas.get(hex)?.min === 0), 30_000)
  for (const d of rest) t.equal(d.daemon.replicas.protects(hex), false)
  const empty = await rest[2].client.call<unknown[]>('GET', '/v1/replicas')
  t.same(empty, [], 'no policy in force')
})

t.test('a chosen node that cannot take the replica (its cache is full) does not hold the repair up', async t => {
  const MiB = 1024 * 1024
  const nodes = await startMesh(t, 3, { config: { ...FAST, maxSize: { bytes: 16 * MiB } } })
  const [a, ...others] = nodes
  const bytes = seededBytes(6 * MiB, 'replica-escalate')
  const { record } = await a.client.importStream(streamOf(bytes))
  const hex = record.ref.slice(7)
  const [firstId, secondId] = rendezvousRank(hex, others.map(idOf))
  const first = others.find(d => idOf(d) === firstId)!
  const second = others.find(d => idOf(d) === secondId)!
  // The first in rank keeps a pinned 14 MiB image under its 16 MiB cap: the replica cannot fit there.
  const filler = await first.client.importStream(streamOf(seededBytes(14 * MiB, 'replica-filler')))
  await first.client.pin(filler.record.ref)
  await a.client.call('POST', '/v1/replicas', { ref: record.ref, min: 2 })
  await until('the second in rank takes the replica on', async () => await holds(second, record.ref), 60_000)
  t.notOk(await holds(first, record.ref), 'the full node never stored it')
  t.same((await holders(nodes, record.ref)).map(idOf).sort(), [idOf(a), secondId].sort(), 'two copies, on A and the second in rank')
})

t.test('the policy survives a restart and spreads to a node that joins later', async t => {
  const nodes = await startMesh(t, 2, { config: FAST })
  const [a, b] = nodes
  const { record } = await a.client.importStream(streamOf(seededBytes(1024 * 1024, 'later')), { meta: { type: 'machine', name: 'l' } })
  const hex = record.ref.slice(7)
  const set = await a.client.call<ReplicaPolicy>('POST', '/v1/replicas', { ref: record.ref.slice(0, 20), min: 2 })
  t.match(set, { image: hex, min: 2, by: idOf(a) }, 'a prefix of a stored image names it')
  await until('B learns the policy', () => b.daemon.replicas.get(hex)?.min === 2, 30_000)
  const file = JSON.parse(await readFile(join(b.dir, REPLICAS_FILE), 'utf8')) as { policies: ReplicaPolicy[] }
  t.match(file.policies, [{ image: hex, min: 2 }], 'B wrote it to its replicas.json')

  // B restarts alone (no bootstrap): what it knows comes from its own file.
  await b.daemon.stop()
  const b2 = await restartDaemon(t, b.dir, { config: FAST })
  t.equal(b2.daemon.peer.getConnections().length, 0, 'the restarted node has no peer to learn from')
  t.match(b2.daemon.replicas.get(hex), { image: hex, min: 2, by: idOf(a) }, 'the policy survived the restart')
  t.equal(b2.daemon.replicas.protects(hex), true)

  // A node that joins later, knowing only A, learns the policy, and as the only live non-holder takes it on.
  const c = await startDaemon(t, { bootstrap: [a.addr], config: FAST })
  await until('C learns the policy', () => c.daemon.replicas.get(hex)?.min === 2, 30_000)
  await until('C takes on the second replica', async () => await holds(c, record.ref))
  t.pass('C holds the image')
})

t.test('policies: last writer wins, bad entries from peers are refused, the file is replaced atomically', async t => {
  const dir = await tempDir(t)
  const p = await ReplicaPolicies.open(dir, 'self')
  const hex = 'ab'.repeat(32)
  const mine = await p.set(hex, 3)
  t.same(await p.merge([{ ...mine, min: 5, ts: mine.ts - 1, by: 'zzz' }]), [], 'an older version is ignored')
  t.same(await p.merge([{ ...mine, min: 5, by: 'zzz' }]), [{ ...mine, min: 5, by: 'zzz' }], 'a tie is broken by the writer id')
  t.equal(p.get(hex)?.min, 5)
  t.same(await p.merge([{ ...mine, min: 7, ts: Date.now() + 3_600_000 }]), [], 'a version an hour in the future is refused')
  t.same(await p.merge([{ image: 'xyz', min: 1, ts: 1, by: 'p' }, { image: hex, min: 1000, ts: Date.now(), by: 'p' }, null, 'junk']), [], 'malformed entries are refused')
  t.match(checkPolicy({ image: hex, min: 65, ts: 1, by: 'p' }), /min is not an integer/)
  await t.rejects(p.set(hex, -1), /min must be an integer/)
  const cleared = await p.set(hex, 0)
  t.ok(cleared.ts > mine.ts, 'a local change is newer than any version seen')
  t.equal(p.protects(hex), false)
  const reopened = await ReplicaPolicies.open(dir, 'self')
  t.same(reopened.all(), p.all(), 'the file holds the same table')
})

t.test('the holds protocol refuses what a peer must not ask or answer', async t => {
  const dagCbor = await import('@ipld/dag-cbor')
  const { decodeHoldsRequest, decodeHoldsResponse, encodeHoldsRequest } = await import('../src/swarm/holds.js')
  const hexes = ['aa'.repeat(32), 'bb'.repeat(32), 'cc'.repeat(32)]
  t.same(decodeHoldsRequest(encodeHoldsRequest(hexes)), hexes, 'round trip')
  t.throws(() => decodeHoldsRequest(dagCbor.encode({ images: new Uint8Array(0) })), /1 to 1024 digests/, 'no digest')
  t.throws(() => decodeHoldsRequest(dagCbor.encode({ images: new Uint8Array(33) })), /1 to 1024 digests/, 'not a multiple of 32')
  t.throws(() => decodeHoldsRequest(dagCbor.encode({ images: new Uint8Array(32 * 1025) })), /1 to 1024 digests/, '1025 digests')
  t.throws(() => decodeHoldsRequest(Uint8Array.of(0xff)), /not valid dag-cbor/)
  t.same(decodeHoldsResponse(dagCbor.encode({ held: Uint8Array.of(0b10100000) }), 3), [true, false, true])
  t.throws(() => decodeHoldsResponse(dagCbor.encode({ held: Uint8Array.of(0b10110000) }), 3), /bits set past/, 'a bit past the last image')
  t.throws(() => decodeHoldsResponse(dagCbor.encode({ held: Uint8Array.of(0, 0) }), 3), /a bitfield of 3 bits/, 'the wrong length')
})

t.test('policies: a damaged file is set aside; the table is bounded, cleared entries make room first', async t => {
  const { writeFile, readdir } = await import('node:fs/promises')
  const { MAX_POLICIES } = await import('../src/swarm/replica-policies.js')
  const dir = await tempDir(t)
  await writeFile(join(dir, REPLICAS_FILE), '{"policies": [tru')
  const p = await ReplicaPolicies.open(dir, 'self')
  t.same(p.all(), [], 'nothing loaded from a damaged file')
  t.ok((await readdir(dir)).includes(`${REPLICAS_FILE}.bad`), 'the damaged file was kept aside')
  const hexOf = (i: number): string => i.toString(16).padStart(64, '0')
  const now = Date.now()
  const adopted = await p.merge(Array.from({ length: MAX_POLICIES + 10 }, (_, i) => ({ image: hexOf(i), min: 1, ts: now, by: 'peer' })))
  t.equal(adopted.length, MAX_POLICIES, 'no more than the bound is taken from a peer')
  await t.rejects(p.set(hexOf(5000), 2), /already keeps 1024/, 'a new policy is refused when the table is full')
  await p.set(hexOf(3), 0)
  t.equal((await p.set(hexOf(5000), 2)).min, 2, 'a cleared entry made room')
  t.equal(p.get(hexOf(3)), undefined, 'the oldest cleared entry was dropped')
  t.equal(p.all().length, MAX_POLICIES)
})
