import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'

/** Whether a TCP port on 127.0.0.1 is free right now. */
async function portFree (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const server = createServer()
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

/**
 * `count` distinct free ports on 127.0.0.1 for the nodes of a loopback cluster, so that every node's
 * address is known before any starts (they all start at once and dial each other). They are taken
 * below the kernel's ephemeral range, where the random ports of outgoing connections and of `/tcp/0`
 * listeners come from, so that another program on the machine is unlikely to take one before the
 * node binds it. Bounded: at most 50 tries per port.
 */
export async function pickPorts (count: number): Promise<number[]> {
  const range = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768 60999')
  const low = Number(range.trim().split(/\s+/)[0])
  const [from, to] = Number.isInteger(low) && low > 12_000 ? [10_000, low] : [61_000, 65_535]
  const ports: number[] = []
  for (let i = 0; i < count; i++) {
    let found: number | undefined
    for (let tries = 0; tries < 50 && found === undefined; tries++) {
      const port = from + Math.floor(Math.random() * (to - from))
      if (!ports.includes(port) && await portFree(port)) found = port
    }
    if (found === undefined) throw new Error(`no free port on 127.0.0.1 between ${from} and ${to} after 50 tries`)
    ports.push(found)
  }
  return ports
}
