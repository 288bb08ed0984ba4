/**
 * One import or export through the library, in its own process, so that a benchmark can time it and
 * read its peak RSS with `/usr/bin/time -v`, with LevelDB settings of its choosing:
 *
 *   BENCH_TUNING='{"writeBufferSize":4194304}' node dist/bench/run-op.js import DATA_DIR FILE
 *   node dist/bench/run-op.js export DATA_DIR REF OUT_FILE
 *
 * It does what `imgswarm import` / `imgswarm export` do (LocalNode.importFile / export), minus the
 * command-line parsing. Prints the ref (import) and a JSON line of what it did on stdout.
 * BENCH_MEMLOG=1 logs process.memoryUsage() (MB) to stderr every 500 ms.
 */
import { LocalNode } from '../src/index.js'
import type { LevelTuning } from '../src/store/tuning.js'

async function main (): Promise<void> {
  const [op, dir, a, b] = process.argv.slice(2)
  const tuning = JSON.parse(process.env.BENCH_TUNING ?? '{}') as Partial<LevelTuning>
  const mb = (n: number): number => Math.round(n / 1e6)
  const log = process.env.BENCH_MEMLOG === '1'
    ? setInterval(() => {
      const m = process.memoryUsage()
      process.stderr.write(`rss ${mb(m.rss)} heap ${mb(m.heapUsed)}/${mb(m.heapTotal)} external ${mb(m.external)} arrayBuffers ${mb(m.arrayBuffers)}\n`)
    }, 500)
    : undefined
  const node = await LocalNode.open({ dir, tuning })
  try {
    if (op === 'import') {
      const { record, newChunks, newBytes } = await node.importFile(a)
      console.log(JSON.stringify({ ref: record.ref, chunks: record.chunks, newChunks, newBytes }))
    } else if (op === 'export') {
      const record = await node.export(a, b)
      console.log(JSON.stringify({ ref: record.ref }))
    } else {
      throw new Error(`unknown op ${op}: import DIR FILE | export DIR REF OUT`)
    }
  } finally {
    await node.close()
    clearInterval(log)
  }
}

await main()
