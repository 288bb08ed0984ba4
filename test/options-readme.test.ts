import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { configKeys } from '../src/node/config.js'
import { OPTIONS, optionDocs } from '../src/node/options.js'
import { ROOT } from './helpers/cli.js'

interface Row { flag: string, arg: string, repeatable: boolean, envs: string[], defaultText: string, line: string }

/** The README's daemon flag table, one row per flag. */
function flagTable (readme: string): Row[] {
  const lines = readme.split('\n')
  const start = lines.indexOf('| flag | variable | default | meaning |')
  if (start < 0) throw new Error('the README has no daemon flag table')
  const rows: Row[] = []
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break
    // `\|` inside a cell (SIZE\|PCT%) is not a column break.
    const [flagCell, envCell, defaultCell] = line.split(/(?<!\\)\|/).slice(1, -1).map(c => c.trim().replaceAll('\\|', '|'))
    const flag = /^`--([a-z-]+)(?: ([^`]+))?`( \(repeatable\))?$/.exec(flagCell)
    if (flag == null) throw new Error(`a flag cell that is not "\`--flag ARG\`": ${flagCell}`)
    rows.push({ flag: flag[1], arg: flag[2] ?? '', repeatable: flag[3] != null, envs: envCell.match(/IMGSWARM_[A-Z0-9_]+/g) ?? [], defaultText: defaultCell.replaceAll('`', ''), line })
  }
  return rows
}

t.test('the README\'s daemon flag table matches the option table', async t => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const rows = flagTable(readme)
  const docs = optionDocs()
  for (const row of rows) t.ok(docs.some(d => d.flag === row.flag), `README row --${row.flag} is an option`)
  for (const doc of docs) {
    const found = rows.filter(r => r.flag === doc.flag)
    t.equal(found.length, 1, `--${doc.flag} has one README row`)
    const row = found[0]
    if (row === undefined) continue
    const option = OPTIONS.find(o => o.flag === doc.flag)
    t.equal(row.arg, doc.arg, `--${doc.flag}'s placeholder`)
    t.equal(row.defaultText, doc.defaultText, `--${doc.flag}'s default`)
    t.same(row.envs, [doc.env, ...option?.deprecated != null ? [option.deprecated.env] : []], `--${doc.flag}'s variables`)
    t.equal(row.repeatable, option?.unit.kind === 'list', `--${doc.flag} is marked repeatable when it is`)
    if (option?.unit.kind === 'list') t.match(row.line, '(comma-separated)', `${doc.env} says it is comma-separated`)
  }
})

t.test('the README lists every config-file key, and no other', async t => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('**Config file.**')
  t.ok(start >= 0, 'the README has a config-file paragraph')
  const paragraph = readme.slice(start, readme.indexOf('```', start))
  const listed = [...paragraph.matchAll(/`([a-z][A-Za-z]*)`/g)].map(m => m[1])
  t.same([...listed].sort(), [...configKeys()].sort())
})
