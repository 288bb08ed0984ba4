import { join } from 'node:path'
import t from 'tap'
import { runCli, tempDir } from './helpers/cli.js'
import { startDaemon } from './helpers/daemons.js'

t.test('GET / sends a browser to the cluster page, behind the same access rules', async t => {
  const tcp = await startDaemon(t)
  const own = await tcp.client.send('GET', '/')
  t.equal(own.statusCode, 302, 'the API\'s own caller is sent on')
  t.equal(own.headers.location, '/ui/')
  let body = ''
  for await (const piece of own) body += String(piece)
  t.match(body, '<a href="/ui/">', 'with a link for a client that does not follow redirects')

  // The page on a port of its own (API on a unix socket): a browser with a session is sent on, others refused.
  const dir = await tempDir(t)
  const d = await startDaemon(t, { dir, config: { api: `unix:${join(dir, 'api.sock')}`, ui: '127.0.0.1:0' } })
  const root = d.daemon.operator.pageUrl!.replace(/\/ui\/$/, '/')
  t.equal((await fetch(root, { redirect: 'manual', headers: { authorization: 'Bearer wrong' } })).status, 403, 'no session and a wrong token: refused')
  const login = (await runCli(['ui', '--data', dir])).stdout.trim()
  const cookie = (await fetch(login, { redirect: 'manual' })).headers.get('set-cookie')!.split(';')[0]
  const res = await fetch(root, { redirect: 'manual', headers: { cookie } })
  t.equal(res.status, 302, 'a session is sent on')
  t.equal(res.headers.get('location'), '/ui/')
})
