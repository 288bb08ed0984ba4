/**
 * `npm run sim:sweep`: the swarm simulator (src/testing/swarm-sim.ts) at N = 1, 2, 4, 8, 16, 100,
 * 1,000 nodes, with the settings of `bench:swarm` (a 32 MiB image, every link 50 Mbit/s), printed as
 * a table and plotted (where gnuplot is installed) against N beside the netns testbed's figures from
 * bench/out/swarm.dat when `bench:swarm` has written them: docs/bench-sim-swarm.png.
 * Settings: SIM_NODES (default 1,2,4,8,16,100,1000), IMGSWARM_BENCH_MIB (32), SIM_MBIT (50).
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { simulateSwarm, type SwarmSimResult } from '../src/testing/swarm-sim.js'
import { MiB, machine, mdTable } from './util.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SIZES = (process.env.SIM_NODES ?? '1,2,4,8,16,100,1000').split(',').map(Number)
const SIZE = Number(process.env.IMGSWARM_BENCH_MIB ?? 32) * MiB
const BITS = Number(process.env.SIM_MBIT ?? 50) * 1e6

const rows: SwarmSimResult[] = []
console.log(`# swarm simulator: ${SIZE / MiB} MiB image, origin and every node ${BITS / 1e6} Mbit/s both ways, 10 ms; ${machine()}`)
for (const nodes of SIZES) {
  const r = await simulateSwarm({ nodes, imageBytes: SIZE, originBitsPerSecond: BITS, uploadBitsPerSecond: BITS, downloadBitsPerSecond: BITS })
  rows.push(r)
  console.error(`N=${nodes}: last node ${r.lastNodeSeconds} s (${r.ratio}× T*), origin ${r.originCopies} copies, ${r.wallSeconds} s wall`)
}
const one = rows.find(r => r.nodes === 1) ?? rows[0]
console.log(mdTable(
  ['nodes', 'last node s', 'p50 s', 'T* s', 'last / T*', 'last / N=1', 'origin copies', 'events', 'wall s', 'peak RSS MiB'],
  rows.map(r => [r.nodes, r.lastNodeSeconds.toFixed(2), r.p50Seconds.toFixed(2), r.lowerBoundSeconds.toFixed(2), r.ratio.toFixed(2), (r.lastNodeSeconds / one.lastNodeSeconds).toFixed(2), r.originCopies.toFixed(2), r.events, r.wallSeconds.toFixed(1), r.peakRssMiB])
))

const out = join(ROOT, 'bench', 'out')
await mkdir(out, { recursive: true })
const dat = join(out, 'sim-swarm.dat')
await writeFile(dat, '# nodes last_node_s lower_bound_s last_over_one origin_copies\n' + rows.map(r => `${r.nodes} ${r.lastNodeSeconds} ${r.lowerBoundSeconds} ${r.lastNodeSeconds / one.lastNodeSeconds} ${r.originCopies}`).join('\n') + '\n')

// The testbed's rows, as last node / its own N = 1, where bench:swarm has run on this checkout.
const swarmDat = join(out, 'swarm.dat')
const testbed = existsSync(swarmDat)
  ? readFileSync(swarmDat, 'utf8').split('\n').filter(l => l !== '' && !l.startsWith('#')).map(l => l.split(' ').map(Number))
  : []
const base = testbed.find(r => r[0] === 1)
const testbedDat = join(out, 'swarm-over-one.dat')
if (base != null) await writeFile(testbedDat, testbed.map(r => `${r[0]} ${r[1] / base[1]}`).join('\n') + '\n')
try {
  execFileSync('gnuplot', ['-e', [
    'set terminal pngcairo size 900,500 noenhanced',
    `set output '${join(ROOT, 'docs', 'bench-sim-swarm.png')}'`,
    `set title 'Last node, relative to one node alone (${SIZE / MiB} MiB, ${BITS / 1e6} Mbit/s links)'`,
    'set xlabel "nodes asking at once"', 'set ylabel "last node / one node alone"', 'set logscale x 10', 'set key top left', 'set grid',
    `plot '${dat}' using 1:4 with linespoints title 'simulator'` + (base != null ? `, '${testbedDat}' using 1:2 with linespoints title 'netns testbed (bench:swarm)'` : '')
  ].join('; ')])
  console.log('\nplot: docs/bench-sim-swarm.png')
} catch {
  console.log('\n(no plot: gnuplot is not installed; apt-get install gnuplot-nox)')
}
