import t from 'tap'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import { windowUpdatesAtHalf } from '../src/peer/yamux-window.js'

const MiB = 1024 * 1024

/** The fields sendWindowUpdate reads, on the package's own prototype; frames it sends are collected. */
function stream (state: StreamState): { s: any, sent: Array<{ type: number, flag: number, length: number }> } {
  const sent: Array<{ type: number, flag: number, length: number }> = []
  const s = Object.assign(Object.create(YamuxStream.prototype), {
    state,
    recvWindow: 16 * MiB,
    recvWindowCapacity: 16 * MiB,
    maxStreamWindowSize: 16 * MiB,
    epochStart: Date.now(),
    getRTT: () => -1,
    sendFrame: (f: { type: number, flag: number, length: number }) => { sent.push(f) }
  })
  return { s, sent }
}

t.test('the package alone grants window after every data frame (why the rule exists)', async t => {
  const { s, sent } = stream(StreamState.Established)
  for (let i = 0; i < 64; i++) { s.recvWindowCapacity -= 64 * 1024; s.sendWindowUpdate() }
  t.equal(sent.length, 64, 'one update per 64 KiB frame: if this changes, the package may no longer need the rule')
})

t.test('with windowUpdatesAtHalf, an established stream grants window once half is used', async t => {
  windowUpdatesAtHalf()
  windowUpdatesAtHalf() // idempotent: not wrapped twice
  const { s, sent } = stream(StreamState.Established)
  for (let i = 0; i < 256; i++) { s.recvWindowCapacity -= 64 * 1024; s.sendWindowUpdate() } // 16 MiB in 64 KiB frames
  t.equal(sent.length, 2, 'two updates for 16 MiB received (each at 8 MiB)')
  t.same(sent.map(f => f.length), [8 * MiB, 8 * MiB], 'each grants what was used')
  t.equal(s.recvWindowCapacity, 16 * MiB, 'the window is whole again')
})

t.test('a stream being answered still acknowledges at once, and a paused one grants nothing', async t => {
  const answered = stream(StreamState.SYNReceived)
  answered.s.sendWindowUpdate()
  t.equal(answered.sent.length, 1, 'the ACK goes out')
  t.equal(answered.s.state, StreamState.Established)
  const paused = stream(StreamState.Paused)
  paused.s.recvWindowCapacity = 0
  paused.s.sendWindowUpdate()
  t.equal(paused.sent.length, 0)
})
