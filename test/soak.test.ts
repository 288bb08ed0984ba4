import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { ROOT } from './helpers/cli.js'

// The short soak of CI: a 3-node cluster under SIGKILLs, origin restarts and (as root) link flaps for
// about a minute while every node fetches; `npm run soak` runs the long one.
t.test('a short soak: every image right, no unexpected death, flat memory, every store verifies', async t => {
  const report = await new Promise<any>((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'bench', 'soak.js'), '--minutes', '1.25', '--nodes', '3', '--images', '4', '--image-mib', '4', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', d => { out += d })
    const timer = setTimeout(() => child.kill('SIGTERM'), 5 * 60_000)
    child.on('error', reject)
    child.on('close', () => {
      clearTimeout(timer)
      try { resolve(JSON.parse(out)) } catch { reject(new Error(`the soak printed no report: ${out.slice(0, 300)}`)) }
    })
  })
  t.same(report.violations, [], 'no violation')
  t.equal(report.ok, true)
  t.ok(report.fetched >= 3, `${String(report.fetched)} images fetched and read back right under faults`)
  t.ok(report.kills + report.originRestarts + report.linkFlaps >= 3, `${String(report.kills)} kills, ${String(report.originRestarts)} origin restarts, ${String(report.linkFlaps)} link flaps`)
  t.equal(report.verified, 3, 'verify passed on every store')
  // Flatness is judged only for daemons that lived long enough: at least one (the never-killed node) must have.
  t.ok(Array.isArray(report.growth) && report.growth.length >= 1, `memory and descriptors checked for ${String(report.growth?.length)} daemons`)
})
