// Opens a format-1 store (which migrates it) and kills this process with SIGKILL soon after `after`
// chunks have moved: the kill lands while the next batch is being written. For test/migrate.test.ts.
import { LocalNode } from '../../src/local-node.js'

const [dir, after] = process.argv.slice(2)
await LocalNode.open({
  dir,
  onMigrate: p => {
    if (p.chunks >= Number(after)) setImmediate(() => process.kill(process.pid, 'SIGKILL'))
  }
})
process.stderr.write('the migration ended before the kill\n')
process.exit(3)
