import { readdir, readFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import t from 'tap'
import { runCli, tempDir } from './helpers/cli.js'
import { clusterUp, leftovers } from './helpers/cluster.js'

t.test('cluster down --keep-logs copies every node\'s log out before it removes the cluster', async t => {
  const dir = join(await tempDir(t, 'isw-cl-'), 'c')
  const { result, info } = await clusterUp(t, dir, ['--nodes', '2'])
  t.equal(result.code, 0, result.stderr)
  if (info == null) return
  const refused = await runCli(['cluster', 'status', '--dir', dir, '--keep-logs'])
  t.equal(refused.code, 2, 'a flag of down only')
  t.match(refused.stderr, /--keep-logs is a flag of cluster down/)

  const down = await runCli(['cluster', 'down', '--dir', dir, '--keep-logs'], { timeoutMs: 60_000 })
  t.equal(down.code, 0, down.stderr)
  const m = /^kept (\d+) logs in (\S+)$/m.exec(down.stdout)
  t.ok(m, `down says where the logs are: ${down.stdout}`)
  if (m == null) return
  const kept = m[2]
  t.equal(dirname(kept), dirname(dir), 'beside the cluster dir')
  t.match(basename(kept), /^c-logs-\d{4}-\d\d-\d\dT/, 'named after it and the time')
  const files = (await readdir(kept)).sort()
  t.equal(files.length, Number(m[1]))
  t.ok(files.includes('node0.log') && files.includes('node1.log'), `each node's log: ${files.join(', ')}`)
  const log = await readFile(join(kept, 'node0.log'), 'utf8')
  t.match(log, /"msg":"ready"/, 'with what the node logged')
  t.same(await leftovers(dir), { processes: [], namespaces: [], links: [], dirExists: false }, 'the cluster itself is gone')
})
