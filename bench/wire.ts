/**
 * `node dist/bench/wire.js`: the peer wire between two processes on 127.0.0.1.
 *
 * - Throughput of one `request()` stream carrying BENCH_WIRE_MIB (default 1024) MiB as 1 MiB frames,
 *   against raw TCP between the same two processes in the same run (the ratio column), and the
 *   receiver's CPU seconds per GiB. Variants: yamux window 16 MiB (ours) and 256 KiB→16 MiB (yamux's
 *   default), the receiver sha256-ing each frame, and pnet.
 * - Time to first frame: a request on a fresh connection (TCP + noise + yamux + multistream-select
 *   + request + first frame) and on an open connection (new stream + request + first frame).
 *
 * The responder is a child process running this file with `serve`; the requester is this process.
 * Environment: BENCH_WIRE_MIB, BENCH_REPS (runs of each throughput row, median shown; default 3),
 * BENCH_FIRST_FRAME_RUNS (default 30), BENCH_WIRE_ONLY (comma-separated row names).
 */
import '../src/util/polyfills.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, connect, type AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generateKey } from '@libp2p/pnet'
import { multiaddr } from '@multiformats/multiaddr'
import { handle, onlyFrame, request, type FrameProtocol } from '../src/peer/exchange.js'
import { encodeVarint } from '../src/peer/frames.js'
import { createPeerNode, DEFAULT_YAMUX, type PeerNode, type YamuxTuning } from '../src/peer/libp2p-node.js'
import { MiB, machine, mdTable, median } from './util.js'

const FRAME = MiB
const WIRE: FrameProtocol = { id: '/imgswarm-bench/wire/1.0.0', maxRequestFrameBytes: 64, maxResponseFrameBytes: FRAME }
const RAW = '/imgswarm-bench/raw/1.0.0'
const SIZE_MIB = Number(process.env.BENCH_WIRE_MIB ?? 1024)
const REPS = Number(process.env.BENCH_REPS ?? 3)
const FIRST_FRAME_RUNS = Number(process.env.BENCH_FIRST_FRAME_RUNS ?? 30)
const ONLY = process.env.BENCH_WIRE_ONLY?.split(',')

interface ServeConfig { mode: 'libp2p' | 'libp2p-raw' | 'tcp', yamux?: YamuxTuning, swarmKey?: string }

/** The responder: answers a request for N MiB with N frames of 1 MiB. */
async function serve (config: ServeConfig): Promise<void> {
  const frame = randomBytes(FRAME)
  if (config.mode === 'tcp') {
    // Baseline: the same bytes with the same length prefixes over a plain socket.
    const server = createServer(socket => {
      socket.once('data', async data => {
        const n = data.readUInt32BE(0)
        const header = encodeVarint(FRAME)
        for (let i = 0; i < n; i++) {
          socket.write(header)
          if (!socket.write(frame)) await once(socket, 'drain')
        }
        socket.end()
      })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }))
  } else {
    const node = await createPeerNode({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      yamux: config.yamux,
      swarmKey: config.swarmKey != null ? Buffer.from(config.swarmKey, 'base64') : undefined
    })
    // Diagnostic: the same bytes on a bare libp2p stream, no framing layer, to isolate its cost.
    await node.handle(RAW, async stream => {
      for await (const req of stream) {
        const bytes = req.subarray()
        const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0)
        for (let i = 0; i < n; i++) {
          if (!stream.send(frame)) await once(stream, 'drain')
        }
        await stream.close()
        break
      }
    })
    await handle(node, WIRE, async (frames, send) => {
      // Frames are views into larger buffers: mind byteOffset.
      const req = await onlyFrame(frames, WIRE)
      const n = new DataView(req.buffer, req.byteOffset, req.byteLength).getUint32(0)
      for (let i = 0; i < n; i++) await send(frame)
      if (process.env.BENCH_DEBUG != null) console.error(`responder: sent ${n} frames`)
    }, { onError: err => { console.error(`responder: ${err.message}`) } })
    console.log(JSON.stringify({ addrs: node.getMultiaddrs().map(String) }))
  }
  // Run until the parent closes our stdin.
  process.stdin.resume()
  await once(process.stdin, 'end')
  process.exit(0)
}

async function startResponder (config: ServeConfig): Promise<{ child: ChildProcess, info: { port?: number, addrs?: string[] } }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve', JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout! })
  const [line] = await once(lines, 'line') as [string]
  return { child, info: JSON.parse(line) }
}

async function stopResponder (child: ChildProcess): Promise<void> {
  child.stdin?.end()
  if (child.exitCode == null) await once(child, 'exit')
}

function nRequest (n: number): Uint8Array {
  const b = new Uint8Array(4)
  new DataView(b.buffer).setUint32(0, n)
  return b
}

interface Run { seconds: number, cpu: number }

async function timeIt (fn: () => Promise<number>): Promise<Run> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  const bytes = await fn()
  const seconds = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  if (bytes !== SIZE_MIB * MiB) throw new Error(`received ${bytes} bytes, expected ${SIZE_MIB * MiB}`)
  return { seconds, cpu: (c.user + c.system) / 1e6 }
}

async function tcpRun (port: number): Promise<Run> {
  return await timeIt(async () => {
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    const req = Buffer.alloc(4)
    req.writeUInt32BE(SIZE_MIB)
    socket.write(req)
    let bytes = 0
    for await (const data of socket) bytes += (data as Buffer).length
    return bytes - SIZE_MIB * encodeVarint(FRAME).length
  })
}

async function libp2pRun (node: PeerNode, addrs: string[], verify: boolean): Promise<Run> {
  return await timeIt(async () => {
    let bytes = 0
    for await (const frame of request(node, addrs.map(a => multiaddr(a)), WIRE, [nRequest(SIZE_MIB)])) {
      if (verify) createHash('sha256').update(frame).digest()
      bytes += frame.length
    }
    return bytes
  })
}

async function rawRun (node: PeerNode, addrs: string[]): Promise<Run> {
  return await timeIt(async () => {
    const stream = await node.dialProtocol(addrs.map(a => multiaddr(a)), RAW)
    const req = Buffer.alloc(4)
    req.writeUInt32BE(SIZE_MIB)
    stream.send(req)
    await stream.close()
    let bytes = 0
    for await (const data of stream) bytes += data.byteLength
    return bytes
  })
}

interface Row { name: string, config: ServeConfig, verify?: boolean }

async function main (): Promise<void> {
  console.log(`# bench/wire: one stream, ${SIZE_MIB} MiB as 1 MiB frames, two processes on 127.0.0.1`)
  console.log(`# ${machine()}; median of ${REPS} runs\n`)
  const psk = new Uint8Array(95)
  generateKey(psk)
  const rows: Row[] = [
    { name: 'raw TCP (baseline)', config: { mode: 'tcp' } },
    { name: 'libp2p bare stream, no framing (diagnostic)', config: { mode: 'libp2p-raw', yamux: { ...DEFAULT_YAMUX } } },
    { name: 'libp2p, yamux window 16 MiB', config: { mode: 'libp2p', yamux: { ...DEFAULT_YAMUX } } },
    { name: 'libp2p, yamux window 256 KiB→16 MiB', config: { mode: 'libp2p', yamux: { initialWindow: 256 * 1024, maxWindow: 16 * MiB } } },
    { name: 'libp2p 16 MiB + sha256 per frame', config: { mode: 'libp2p', yamux: { ...DEFAULT_YAMUX } }, verify: true },
    { name: 'libp2p 16 MiB + pnet', config: { mode: 'libp2p', yamux: { ...DEFAULT_YAMUX }, swarmKey: Buffer.from(psk).toString('base64') } }
  ]
  // Every responder and requester stays up for the whole run, and the repetitions go round the rows,
  // so that each row sees the same share of whatever else the machine is doing.
  const active = rows.filter(row => ONLY == null || row.config.mode === 'tcp' || ONLY.some(o => row.name.includes(o)))
  const setups: Array<{ row: Row, child: ChildProcess, info: { port?: number, addrs?: string[] }, node?: PeerNode, runs: Run[] }> = []
  try {
    for (const row of active) {
      const { child, info } = await startResponder({ ...row.config, mode: row.config.mode === 'libp2p-raw' ? 'libp2p' : row.config.mode })
      const setup: typeof setups[number] = { row, child, info, runs: [] }
      setups.push(setup)
      if (row.config.mode !== 'tcp') {
        setup.node = await createPeerNode({
          privateKey: await generateKeyPair('Ed25519'),
          listen: ['/ip4/127.0.0.1/tcp/0'],
          yamux: row.config.yamux,
          swarmKey: row.config.swarmKey != null ? Buffer.from(row.config.swarmKey, 'base64') : undefined
        })
      }
    }
    for (let i = 0; i < REPS; i++) {
      for (const s of setups) {
        const { row, info, node } = s
        s.runs.push(row.config.mode === 'tcp'
          ? await tcpRun(info.port!)
          : row.config.mode === 'libp2p-raw' ? await rawRun(node!, info.addrs!) : await libp2pRun(node!, info.addrs!, row.verify === true))
      }
    }
  } finally {
    for (const s of setups) {
      await s.node?.stop()
      await stopResponder(s.child)
    }
  }
  const table: Array<Array<string | number>> = []
  const baseline = median(setups[0].runs.map(r => SIZE_MIB / r.seconds))
  for (const { row, runs } of setups) {
    const mibs = median(runs.map(r => SIZE_MIB / r.seconds))
    const cpuPerGiB = median(runs.map(r => r.cpu / (SIZE_MIB / 1024)))
    table.push([row.name, mibs.toFixed(0), (mibs / baseline).toFixed(2), cpuPerGiB.toFixed(2)])
  }
  console.log(mdTable(['path', 'MiB/s', '× raw TCP', 'receiver CPU s/GiB'], table))

  // Time to first frame.
  const { child, info } = await startResponder({ mode: 'libp2p', yamux: { ...DEFAULT_YAMUX } })
  try {
    const cold: number[] = []
    const warm: number[] = []
    const addrs = info.addrs!.map(a => multiaddr(a))
    for (let i = 0; i < FIRST_FRAME_RUNS; i++) {
      // A fresh node each time, so the first request also dials: TCP, noise, yamux, protocol select.
      const node = await createPeerNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
      try {
        for (const fresh of [true, false]) {
          const t0 = performance.now()
          const it = request(node, addrs, WIRE, [nRequest(1)])
          await it.next()
          ;(fresh ? cold : warm).push(performance.now() - t0)
          for await (const _ of it) ;
        }
      } finally {
        await node.stop()
      }
    }
    console.log(`\n# time to first frame, median of ${FIRST_FRAME_RUNS} (p90 in brackets)\n`)
    const p90 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]
    console.log(mdTable(['request', 'ms'], [
      ['on a new connection (dial + handshake + stream + 1 MiB frame)', `${median(cold).toFixed(1)} (${p90(cold).toFixed(1)})`],
      ['on an open connection (stream + 1 MiB frame)', `${median(warm).toFixed(1)} (${p90(warm).toFixed(1)})`]
    ]))
  } finally {
    await stopResponder(child)
  }
}

if (process.argv[2] === 'serve') await serve(JSON.parse(process.argv[3]) as ServeConfig)
else await main()
