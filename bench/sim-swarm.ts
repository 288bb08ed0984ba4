import { parseArgs } from 'node:util'
import { DEFAULT_SWARM_LIMITS } from '../src/fetch/swarm-fetch.js'
import { simulateSwarm } from '../src/testing/swarm-sim.js'

/*
 * npm run sim:swarm -- --nodes N [--image-mib S] [--seed K] [--json]
 * The swarm simulator: N nodes run the real swarm fetch in virtual time over simulated links (see
 * src/testing/swarm-sim.ts). With --json, standard output holds one JSON object and nothing else.
 */
const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1' },
    'image-mib': { type: 'string', default: '32' },
    seed: { type: 'string', default: '1' },
    'origin-mbit': { type: 'string', default: '100' },
    'up-mbit': { type: 'string', default: '100' },
    'down-mbit': { type: 'string', default: '100' },
    'latency-ms': { type: 'string', default: '10' },
    dials: { type: 'string', default: '10' },
    'join-spread-s': { type: 'string', default: '0' },
    die: { type: 'string', default: '0' },
    'die-within-s': { type: 'string', default: '5' },
    limit: { type: 'string', multiple: true, default: [] },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false }
  }
})

if (values.help) {
  process.stdout.write(`usage: npm run sim:swarm -- --nodes N [--image-mib S] [--seed K] [--json]
  [--origin-mbit R] [--up-mbit R] [--down-mbit R] [--latency-ms L] [--dials D]
  [--join-spread-s T] [--die K] [--die-within-s T] [--limit NAME=VALUE ...]
Defaults: 1 node, 32 MiB, seed 1, 100 Mbit/s origin and node links, 10 ms latency, 10 dials a node
(about 20 neighbours), all nodes starting at t = 0, none dying. --limit sets one of the swarm
fetch's limits (src/fetch/swarm-fetch.ts SwarmLimits), e.g. --limit stallMs=60000.
`)
  process.exit(0)
}

const num = (name: keyof typeof values): number => {
  const v = Number(values[name])
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`sim:swarm: --${name} must be a number ≥ 0, not ${String(values[name])}\n`)
    process.exit(2)
  }
  return v
}
const nodes = num('nodes')
if (nodes < 1 || !Number.isInteger(nodes)) {
  process.stderr.write('sim:swarm: --nodes must be a whole number ≥ 1\n')
  process.exit(2)
}

const limits: Record<string, number> = {}
for (const l of values.limit) {
  const [name, value] = l.split('=')
  if (!(name in DEFAULT_SWARM_LIMITS) || !Number.isFinite(Number(value))) {
    process.stderr.write(`sim:swarm: --limit ${l}: not NAME=NUMBER with NAME one of ${Object.keys(DEFAULT_SWARM_LIMITS).join(', ')}\n`)
    process.exit(2)
  }
  limits[name] = Number(value)
}

const result = await simulateSwarm({
  limits,
  nodes,
  imageBytes: Math.round(num('image-mib') * 1024 * 1024),
  seed: num('seed'),
  originBitsPerSecond: num('origin-mbit') * 1e6,
  uploadBitsPerSecond: num('up-mbit') * 1e6,
  downloadBitsPerSecond: num('down-mbit') * 1e6,
  latencySeconds: num('latency-ms') / 1000,
  dials: num('dials'),
  joinSpreadSeconds: num('join-spread-s'),
  die: num('die'),
  dieWithinSeconds: num('die-within-s'),
  progress: line => { process.stderr.write(`sim:swarm: ${line}\n`) }
})

if (values.json) {
  process.stdout.write(JSON.stringify(result) + '\n')
} else {
  const r = result
  process.stdout.write(`${r.nodes} nodes, ${(r.imageBytes / 1048576).toFixed(1)} MiB (${r.chunks} chunks), origin ${r.originBitsPerSecond / 1e6} Mbit/s, nodes ${r.uploadBitsPerSecond / 1e6}/${r.downloadBitsPerSecond / 1e6} Mbit/s, ${r.latencySeconds * 1000} ms, seed ${r.seed}
last node ${r.lastNodeSeconds} s, p50 ${r.p50Seconds} s, fluid bound T* ${r.lowerBoundSeconds} s: ${r.ratio}× T*
origin ${r.originCopies} copies, peers ${r.peerCopies} copies, ${r.nodesComplete}/${r.nodes - r.died} surviving nodes complete, ${r.badChunks} bad chunks
${r.events} events in ${r.wallSeconds} s wall, peak RSS ${r.peakRssMiB} MiB
`)
}
if (result.nodesComplete !== result.nodes - result.died) process.exitCode = 1
