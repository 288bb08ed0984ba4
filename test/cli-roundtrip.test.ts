import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { runCli, tempDir } from './helpers/cli.js'
import { seededBytes, sha256Ref } from './helpers/data.js'

t.test('import prints the sha256 ref; export gives back the same bytes', async t => {
  const dir = await tempDir(t)
  const env = { IMGSWARM_DATA: join(dir, 'data') }
  const bytes = seededBytes(3 * 1024 * 1024 + 17)
  await writeFile(join(dir, 'img'), bytes)
  const imp = await runCli(['import', join(dir, 'img'), '--type', 'machine', '--name', 'cirros'], { env })
  t.equal(imp.code, 0, imp.stderr)
  t.equal(imp.stdout, `${sha256Ref(bytes)}\n`, 'the only line on stdout is the ref')
  const exp = await runCli(['export', imp.stdout.trim(), '-o', join(dir, 'out')], { env })
  t.equal(exp.code, 0, exp.stderr)
  t.ok((await readFile(join(dir, 'out'))).equals(bytes), 'exported bytes are identical')
})
