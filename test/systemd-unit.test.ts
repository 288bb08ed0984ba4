import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ROOT, tempDir } from './helpers/cli.js'

const ANALYZE = '/usr/bin/systemd-analyze'

t.test('the systemd unit passes systemd-analyze verify', { skip: existsSync(ANALYZE) ? false : 'no systemd-analyze here: the unit is not checked' }, async t => {
  const unit = await readFile(join(ROOT, 'contrib', 'imgswarm.service'), 'utf8')
  t.match(unit, /^ProtectSystem=strict$/m, 'sandboxed')
  t.match(unit, /^NoNewPrivileges=yes$/m)
  // The binary is not installed where the unit expects it in a checkout: verify runs it through env.
  const dir = await tempDir(t)
  const copy = join(dir, 'imgswarm.service')
  await writeFile(copy, unit.replaceAll('/usr/local/bin/imgswarm', '/usr/bin/env imgswarm'))
  const { stdout, stderr } = await promisify(execFile)(ANALYZE, ['verify', copy])
  t.equal(`${stdout}${stderr}`.trim(), '', 'no complaint')
})

t.test('the Grafana dashboard is JSON and queries only metrics the daemon exports', async t => {
  const board = JSON.parse(await readFile(join(ROOT, 'contrib', 'grafana-dashboard.json'), 'utf8'))
  const exprs: string[] = board.panels.flatMap((p: any) => (p.targets ?? []).map((x: any) => x.expr))
  t.ok(exprs.length >= 6)
  const { DaemonMetrics } = await import('../src/daemon/metrics.js')
  const m = new DaemonMetrics({ diskUsage: async () => null, listImages: async () => [] } as any, () => 0, { used: () => 0, cap: async () => 0 })
  m.replicaGauges(() => [])
  m.peerBoundGauges(() => undefined, () => 0)
  const names = new Set((await m.registry.getMetricsAsJSON()).map(x => x.name))
  for (const e of exprs) {
    for (const name of e.match(/\b(imgswarm_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+)/g) ?? []) {
      const base = name.replace(/_(bucket|sum|count)$/, '')
      t.ok(names.has(base), `${name} is exported`)
    }
  }
})
