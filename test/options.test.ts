import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { UsageError } from '../src/errors.js'
import { configKeys, defaultConfig, loadConfig, type FlagValues } from '../src/node/config.js'
import { NODE_FLAGS, nodeOptionsHelp } from '../src/node/option-flags.js'
import { OPTIONS, type NodeConfig } from '../src/node/options.js'
import { formatDuration, parseDuration } from '../src/util/units.js'
import { runCli, tempDir } from './helpers/cli.js'

interface Teardown { teardown: (fn: () => Promise<void> | void) => void }

/** loadConfig with a config file holding `file` (none when undefined), and the warnings it gave. */
async function load (t: Teardown, flags: FlagValues, env: NodeJS.ProcessEnv, file?: object): Promise<{ config: NodeConfig, warnings: string[] }> {
  const dir = await tempDir(t)
  if (file !== undefined) await writeFile(join(dir, 'config.json'), JSON.stringify(file))
  const warnings: string[] = []
  const config = await loadConfig(flags, env, dir, { onWarning: m => { warnings.push(m) } })
  return { config, warnings }
}

t.test('with nothing given, the config is the table\'s defaults', async t => {
  const dir = await tempDir(t)
  const config = await loadConfig({}, {}, dir, { onWarning: () => { t.fail('no warning') } })
  t.same(config, defaultConfig(dir))
  t.equal(config.evictionGraceMs, 60_000)
  t.equal(config.replicaIntervalMs, 30_000)
  t.equal(config.highWater, 0.9)
  t.equal(config.lowWater, 0.8)
  t.same(config.listen, ['/ip4/0.0.0.0/tcp/4001'])
  t.equal(config.api, '127.0.0.1:7480')
  t.equal(config.maxSize, undefined)
})

t.test('durations take the same units from a flag, a variable and the config file', async t => {
  const cases: Array<[string | number, number]> = [['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['250ms', 250], ['30', 30_000], ['1.5', 1500], [45, 45_000]]
  for (const [given, ms] of cases) {
    if (typeof given === 'string') {
      t.equal((await load(t, { 'eviction-grace': given }, {})).config.evictionGraceMs, ms, `--eviction-grace ${given}`)
      t.equal((await load(t, {}, { IMGSWARM_EVICTION_GRACE: given })).config.evictionGraceMs, ms, `IMGSWARM_EVICTION_GRACE=${given}`)
      t.equal((await load(t, { 'replica-interval': given }, {})).config.replicaIntervalMs, ms, `--replica-interval ${given}`)
      t.equal((await load(t, {}, { IMGSWARM_REPLICA_INTERVAL: given })).config.replicaIntervalMs, ms, `IMGSWARM_REPLICA_INTERVAL=${given}`)
    }
    t.equal((await load(t, {}, {}, { evictionGrace: given })).config.evictionGraceMs, ms, `"evictionGrace": ${JSON.stringify(given)}`)
    t.equal((await load(t, {}, {}, { replicaInterval: given })).config.replicaIntervalMs, ms, `"replicaInterval": ${JSON.stringify(given)}`)
  }
  t.equal((await load(t, { 'eviction-grace': '0' }, {})).config.evictionGraceMs, 0, 'no grace at all is allowed')
  await t.rejects(load(t, { 'replica-interval': '50ms' }, {}), { code: 'IMGSWARM_USAGE', message: /^--replica-interval must be from 0\.1s to 1d/ }, 'a repair loop faster than 100 ms is refused')
  await t.rejects(load(t, { 'eviction-grace': '2d' }, {}), { message: /^--eviction-grace must be from 0s to 1d, not "2d"/ })
  await t.rejects(load(t, {}, { IMGSWARM_EVICTION_GRACE: 'soon' }), { message: /^IMGSWARM_EVICTION_GRACE: invalid duration "soon"/ }, 'the error names the variable')
  await t.rejects(load(t, {}, {}, { evictionGrace: '-1s' }), { message: /^evictionGrace \(in .*config\.json\): invalid duration/ }, 'and the config key and file')
  await t.rejects(load(t, {}, {}, { evictionGrace: true }), UsageError)
})

t.test('sizes, rates and shares', async t => {
  t.same((await load(t, { 'max-size': '10GiB' }, {})).config.maxSize, { bytes: 10 * 1024 ** 3 })
  t.same((await load(t, {}, { IMGSWARM_MAX_SIZE: '123456' })).config.maxSize, { bytes: 123456 }, 'a bare number is bytes')
  t.same((await load(t, {}, {}, { maxSize: 1e9 })).config.maxSize, { bytes: 1e9 }, 'a JSON number too')
  t.same((await load(t, {}, {}, { maxSize: '40%' })).config.maxSize, { percent: 40 })
  await t.rejects(load(t, { 'max-size': '10 gallons' }, {}), { message: /^--max-size: invalid size "10 gallons"/ })
  t.equal((await load(t, {}, { IMGSWARM_MAX_UPLOAD_RATE: '1Gbit' })).config.maxUploadRate, 125e6)
  t.equal((await load(t, {}, {}, { maxOriginRate: 5000 })).config.maxOriginRate, 5000, 'a bare rate is bytes a second')
  const { config } = await load(t, { 'high-water': '95%' }, { IMGSWARM_LOW_WATER: '0.5' })
  t.equal(config.highWater, 0.95)
  t.equal(config.lowWater, 0.5)
  await t.rejects(load(t, { 'low-water': '0.9' }, {}, { highWater: 0.8 }), { message: 'the low watermark (0.9) must be below the high one (0.8)' })
  await t.rejects(load(t, {}, {}, { highWater: { toString: 1 } }), { message: /^highWater \(in .*\) must be a share of the cap/ })
})

t.test('a flag wins over its variable, which wins over the config file, which wins over the default', async t => {
  const file = { logLevel: 'warn', maxSize: '3GiB', api: 'unix:/file.sock', evictionGrace: '3m' }
  const env = { IMGSWARM_LOG_LEVEL: 'error', IMGSWARM_MAX_SIZE: '2GiB', IMGSWARM_EVICTION_GRACE: '2m' }
  const { config } = await load(t, { 'log-level': 'debug', 'eviction-grace': '1m' }, env, file)
  t.equal(config.logLevel, 'debug', 'flag over variable and file')
  t.equal(config.evictionGraceMs, 60_000, 'flag over variable and file')
  t.same(config.maxSize, { bytes: 2 * 1024 ** 3 }, 'variable over file')
  t.equal(config.api, 'unix:/file.sock', 'file over default')
  t.same(config.replicaIntervalMs, 30_000, 'default when nothing is given')
})

t.test('lists and switches', async t => {
  const { config } = await load(t, { listen: ['/ip4/127.0.0.1/tcp/1'] }, { IMGSWARM_BOOTSTRAP: ' /a , /b,, ', IMGSWARM_MDNS: 'yes', IMGSWARM_OPEN: '0' }, { allowPeers: ['p1'], openRequests: true })
  t.same(config.listen, ['/ip4/127.0.0.1/tcp/1'])
  t.same(config.bootstrap, ['/a', '/b'], 'a variable is comma-separated')
  t.same(config.allowPeers, ['p1'])
  t.equal(config.mdns, true)
  t.equal(config.open, false)
  t.equal(config.openRequests, true)
  t.same((await load(t, { listen: [] }, { IMGSWARM_LISTEN: ' , ' })).config.listen, ['/ip4/0.0.0.0/tcp/4001'], 'empty lists are not given')
  await t.rejects(load(t, {}, { IMGSWARM_MDNS: 'ture' }), { message: 'IMGSWARM_MDNS must be 1 or 0 (true/false, yes/no, on/off), not "ture"' }, 'a typo is not silently "off"')
  await t.rejects(load(t, {}, {}, { mdns: 'yes' }), { message: /^mdns \(in .*\) must be true or false/ })
  await t.rejects(load(t, {}, {}, { listen: '/ip4/1.2.3.4/tcp/1' }), { message: /must be a list of strings/ })
  await t.rejects(load(t, { 'log-level': 'loud' }, {}), { message: '--log-level must be one of error, warn, info, debug, not "loud"' })
})

t.test('the deprecated _MS variables and …Ms keys still take milliseconds, with one warning line each', async t => {
  let r = await load(t, {}, { IMGSWARM_EVICTION_GRACE_MS: '1500' })
  t.equal(r.config.evictionGraceMs, 1500)
  t.equal(r.warnings.length, 1)
  t.match(r.warnings[0], /^IMGSWARM_EVICTION_GRACE_MS is deprecated \(milliseconds\): use IMGSWARM_EVICTION_GRACE=1\.5s/)
  t.notMatch(r.warnings[0], /\n/, 'one line')

  r = await load(t, {}, { IMGSWARM_REPLICA_INTERVAL_MS: '30000' })
  t.equal(r.config.replicaIntervalMs, 30_000)
  t.match(r.warnings, [/^IMGSWARM_REPLICA_INTERVAL_MS is deprecated \(milliseconds\): use IMGSWARM_REPLICA_INTERVAL=30s/])
  // The inconsistency this removes: IMGSWARM_REPLICA_INTERVAL_MS=30 was 30 ms while --replica-interval 30 was 30 s.
  t.equal((await load(t, {}, { IMGSWARM_REPLICA_INTERVAL: '30' })).config.replicaIntervalMs, 30_000, 'the new variable reads like the flag')
  await t.rejects(load(t, {}, { IMGSWARM_REPLICA_INTERVAL_MS: '30' }), { message: /^IMGSWARM_REPLICA_INTERVAL_MS must be from 100 to 86400000 \(ms\)/ })

  r = await load(t, {}, {}, { evictionGraceMs: 2000, replicaIntervalMs: 1000 })
  t.equal(r.config.evictionGraceMs, 2000)
  t.equal(r.config.replicaIntervalMs, 1000)
  t.match(r.warnings, [/^evictionGraceMs \(in .*\) is deprecated \(milliseconds\): use "evictionGrace": "2s"/, /^replicaIntervalMs \(in .*\) is deprecated/])

  r = await load(t, {}, { IMGSWARM_EVICTION_GRACE: '10s', IMGSWARM_EVICTION_GRACE_MS: '5' })
  t.equal(r.config.evictionGraceMs, 10_000, 'the new spelling wins over the old one')
  t.match(r.warnings, [/^IMGSWARM_EVICTION_GRACE_MS is deprecated \(milliseconds\): ignored, as IMGSWARM_EVICTION_GRACE is set/])

  r = await load(t, { 'eviction-grace': '7s' }, {}, { evictionGraceMs: 5 })
  t.equal(r.config.evictionGraceMs, 7000, 'a flag wins over a deprecated key')
  t.equal(r.warnings.length, 1, 'which is still reported')
})

t.test('the config file: unknown keys are refused with the list of known ones', async t => {
  await t.rejects(load(t, {}, {}, { evictionGrase: '1m' }), { code: 'IMGSWARM_USAGE', message: /unknown key "evictionGrase" \(known: listen, bootstrap, .*evictionGrace, evictionGraceMs, .*data\)$/ })
  const keys = configKeys()
  for (const o of OPTIONS) t.ok(keys.includes(o.configKey), `${o.configKey} is known`)
  t.equal(new Set(keys).size, keys.length, 'no key is used twice')
  const dir = await tempDir(t)
  await writeFile(join(dir, 'other.json'), JSON.stringify({ logLevel: 'warn' }))
  t.equal((await loadConfig({ config: join(dir, 'other.json') }, {}, dir)).logLevel, 'warn', '--config names the file')
  t.equal((await loadConfig({}, { IMGSWARM_CONFIG: join(dir, 'other.json') }, dir)).logLevel, 'warn', 'so does IMGSWARM_CONFIG')
  await t.rejects(loadConfig({ config: join(dir, 'missing.json') }, {}, dir), { message: /^cannot read config file/ }, 'a named file must exist')
})

t.test('the table: one flag, variable and key per option; flags for parseArgs; help', async t => {
  for (const field of ['flag', 'env', 'configKey'] as const) {
    const values = OPTIONS.map(o => o[field])
    t.equal(new Set(values).size, values.length, `every ${field} is used once`)
  }
  for (const o of OPTIONS) {
    t.match(o.env, /^IMGSWARM_[A-Z_]+$/)
    const spec = NODE_FLAGS[o.flag]
    t.equal(spec.type, o.unit.kind === 'bool' ? 'boolean' : 'string', `--${o.flag}'s type`)
    t.equal(spec.multiple === true, o.unit.kind === 'list', `--${o.flag} is repeatable when a list`)
  }
  const help = nodeOptionsHelp()
  for (const o of OPTIONS) {
    t.match(help, `--${o.flag}`)
    t.match(help, o.env)
    if (o.deprecated != null) t.match(help, o.deprecated.env)
  }
  t.equal(formatDuration(60_000), '60s')
  t.equal(formatDuration(1500), '1.5s')
  t.equal(formatDuration(250), '250ms')
  t.equal(formatDuration(7_200_000), '2h')
  for (const ms of [0, 100, 250, 1000, 1500, 60_000, 90_000, 3_600_000, 86_400_000]) t.equal(parseDuration(formatDuration(ms), { zero: true }), ms, `${ms} ms reads back`)
})

t.test('the command line: daemon --help is made from the table, a bad value fails before anything starts', async t => {
  const help = await runCli(['daemon', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, '--eviction-grace DURATION')
  t.match(help.stdout, 'IMGSWARM_EVICTION_GRACE, config key evictionGrace; default 60s')
  const dir = await tempDir(t)
  const bad = await runCli(['daemon', '--data', dir, '--eviction-grace', 'soon'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /^imgswarm daemon: --eviction-grace: invalid duration "soon"/)
})
