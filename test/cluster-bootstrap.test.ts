import t from 'tap'
import { bootstrapOf, FULL_MESH_UP_TO } from '../src/cluster/cluster.js'

t.test('a small cluster bootstraps every node from every other', async t => {
  for (let n = 1; n <= FULL_MESH_UP_TO; n++) {
    for (let k = 0; k < n; k++) t.same(bootstrapOf(k, n), Array.from({ length: n }, (_, j) => j).filter(j => j !== k), `node${k} of ${n}`)
  }
})

t.test('a large cluster bootstraps each node from ~2·log2(N) others, named by both ends, all in one swarm', async t => {
  for (const n of [9, 16, 33, 64, 100, 200]) {
    const lists = Array.from({ length: n }, (_, k) => bootstrapOf(k, n))
    const most = Math.max(...lists.map(l => l.length))
    t.ok(most <= 2 * Math.ceil(Math.log2(n)), `${n} nodes: at most ${2 * Math.ceil(Math.log2(n))} bootstrap peers each (${most})`)
    t.ok(lists.every((l, k) => !l.includes(k) && l.every(j => j >= 0 && j < n)), `${n} nodes: only other nodes of the cluster`)
    t.ok(lists.every((l, k) => l.every(j => lists[j].includes(k))), `${n} nodes: every pair named by both ends`)
    // Breadth-first from node0 over the bootstrap links: every node is reached within a few hops.
    const hops = new Array<number>(n).fill(-1)
    hops[0] = 0
    for (let queue = [0]; queue.length > 0;) {
      const next: number[] = []
      for (const a of queue) for (const b of lists[a]) if (hops[b] < 0) { hops[b] = hops[a] + 1; next.push(b) }
      queue = next
    }
    t.ok(hops.every(h => h >= 0), `${n} nodes: one swarm`)
    t.ok(Math.max(...hops) <= Math.ceil(Math.log2(n)), `${n} nodes: any node within log2(N) hops of node0 (${Math.max(...hops)})`)
  }
})
