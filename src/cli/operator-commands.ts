import type { JobView } from '../node/job-board.js'
import { formatBytes, formatTable } from '../util/format.js'
import type { Command } from './command.js'
import { requireDaemon } from './daemon-commands.js'
import { print, printJson } from './output.js'

export const operatorCommands: Command[] = [
  {
    name: 'ui',
    summary: 'print a URL of the cluster page that lets your browser in (for 15 minutes; the page then stays open for 12 hours)',
    usage: 'imgswarm ui [--json] [--api ADDR]',
    details: [
      'The page is read-only and served by the daemon at /ui/: on the API\'s address when that is TCP, else on the',
      'loopback port of --ui ADDR. The URL carries a signed token that a daemon restart voids; opening it sets a',
      'cookie for /ui/ only. Through an SSH tunnel: ssh -L PORT:127.0.0.1:PORT host, then open the URL locally.'
    ].join('\n'),
    options: { api: { type: 'string' } },
    async run (ctx) {
      const client = await requireDaemon(ctx)
      const session = await client.call<{ url: string, expires: string }>('POST', '/v1/ui/session', {})
      if (ctx.json) printJson(ctx, session)
      else print(ctx, session.url)
      return 0
    }
  },
  {
    name: 'jobs',
    summary: 'fetches in flight on the daemon, with progress, rate and ETA, then recent ones',
    usage: 'imgswarm jobs [--json] [--api ADDR]',
    options: { api: { type: 'string' } },
    async run (ctx) {
      const jobs = await (await requireDaemon(ctx)).call<JobView[]>('GET', '/v1/fetch')
      if (ctx.json) printJson(ctx, jobs)
      else if (jobs.length === 0) print(ctx, 'no fetches since the daemon started')
      else print(ctx, formatTable(['IMAGE', 'STATE', 'DONE', 'SIZE', 'PEERS', 'ORIGIN', 'RATE', 'ETA', 'TIME'], jobs.map(jobRow)))
      return 0
    }
  }
]

/** One job as a table row: bytes by source, rate from peers and origin together. */
export function jobRow (j: JobView): string[] {
  const moving = j.rate.peer + j.rate.origin + j.rate.local
  return [
    (j.image ?? j.ref).replace(/^sha256:/, '').slice(0, 16),
    j.hit === true ? 'held' : j.state,
    j.percent != null ? `${j.percent.toFixed(1)}%` : '-',
    j.size != null ? formatBytes(j.size) : '-',
    formatBytes(j.bytes.peer),
    formatBytes(j.bytes.origin),
    j.finished == null && moving > 0 ? `${formatBytes(moving)}/s` : '-',
    j.etaSeconds != null ? `${j.etaSeconds}s` : '-',
    `${j.seconds.toFixed(1)}s`
  ]
}
