import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/** The fields of a yamux stream that its window-update rule reads (private in the package's types). */
interface WindowState {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let applied = false

/**
 * Makes yamux streams grant more receive window only once half of it is used up, as Go's and Rust's
 * yamux do. @chainsafe/libp2p-yamux 8.0.1 sends a window update after every data frame it receives:
 * with 64 KiB chunk frames that is one more encrypted message and one more socket write per chunk,
 * which cost a receiving node ~2.5 CPU-s per GiB on loopback (docs/benchmarks.md). The sender always
 * keeps at least half the window (8 MiB by default) to send into, far above any LAN's
 * bandwidth-delay product. Streams being opened or answered (SYN/ACK flags to send) and paused
 * streams keep the package's own behaviour. Idempotent; the package version is pinned.
 */
export function windowUpdatesAtHalf (): void {
  if (applied) return
  applied = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowState) => void }
  const sendWindowUpdate = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowState): void {
    if (this.state === StreamState.Established && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) return
    sendWindowUpdate.call(this)
  }
}
