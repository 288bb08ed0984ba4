import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { errorClasses } from '../src/errors.js'
import { ROOT } from './helpers/cli.js'

t.test('every error code is listed in docs/errors.md with its class', async t => {
  const doc = await readFile(join(ROOT, 'docs', 'errors.md'), 'utf8')
  const codes = new Set<string>()
  for (const E of errorClasses) {
    const err = new (E as unknown as new (m: string) => Error & { code: string })('x')
    t.equal(err.code, E.code, `${E.name} carries its static code`)
    t.equal(err.name, E.name, `${E.name} has a stable name`)
    t.notOk(codes.has(E.code), `${E.code} is used once`)
    codes.add(E.code)
    t.match(doc, new RegExp(`\\| \`${E.code}\` \\| \`${E.name}\` \\|`), `${E.code} (${E.name}) is documented`)
  }
})
