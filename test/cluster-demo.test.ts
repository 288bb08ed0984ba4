import { spawn } from 'node:child_process'
import { chmod, copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, tempDir } from './helpers/cli.js'

/*
 * The demo's script run against a stand-in imgswarm (the real run is `npm run demo`, a minute with
 * three daemons): what it says where it prints the page's URL.
 */
const STUB = `#!/usr/bin/env bash
case "$1" in
  publish) echo "sha256:$(printf 'ab%.0s' {1..32})" ;;
  inspect) echo '{"state":"available","size":67108864,"sources":{"origin":0,"peers":67108864,"local":0}}' ;;
  ui) echo "http://127.0.0.1:40000/ui/?t=login.1.x" ;;
  get) out="$4"; case "$out" in *v1.raw) cp "$(dirname "$out")/v1.raw" "$out" ;; *v2.raw) cp "$(dirname "$out")/v2.raw" "$out" ;; esac ;;
esac
`

async function demo (dir: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null, out: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(join(dir, 'imgswarm-cluster-demo'), [], { env: { ...process.env, TMPDIR: dir, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', s => { out += s })
    child.stderr.setEncoding('utf8').on('data', s => { out += s })
    child.on('error', reject)
    child.on('close', code => { resolve({ code, out }) })
  })
}

t.test('the demo says, with the page\'s URL, that the cluster goes down unless IMGSWARM_DEMO_HOLD keeps it up', async t => {
  const dir = await tempDir(t)
  await copyFile(join(ROOT, 'bin', 'imgswarm-cluster-demo'), join(dir, 'imgswarm-cluster-demo'))
  await writeFile(join(dir, 'imgswarm'), STUB)
  await chmod(join(dir, 'imgswarm'), 0o755)
  await chmod(join(dir, 'imgswarm-cluster-demo'), 0o755)

  const plain = await demo(dir, { IMGSWARM_DEMO_HOLD: '' })
  t.equal(plain.code, 0, plain.out)
  t.match(plain.out, /^http:\/\/127\.0\.0\.1:40000\/ui\/\?t=login\.1\.x\n {3}\(the cluster goes down now, so this URL stops working: IMGSWARM_DEMO_HOLD=300 npm run demo keeps it up 5 minutes\)$/m,
    'right under the URL')
  const held = await demo(dir, { IMGSWARM_DEMO_HOLD: '1' })
  t.equal(held.code, 0, held.out)
  t.match(held.out, /\/ui\/\?t=login\.1\.x\n {3}\(the cluster stays up for 1 s so you can look\)$/m)
  t.notMatch(held.out, /goes down now/)
})
