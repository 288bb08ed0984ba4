import t from 'tap'
import { ownerInTable } from '../src/api/socket-owner.js'

// Rows as the kernel writes /proc/net/tcp6: each 32-bit word of the address in host (little-endian)
// byte order, then the port in hex; the uid is the eighth field.
const TCP6 = [
  '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
  '   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11111 1 0000000000000000 100 0 0 10 0',
  '   1: 00000000000000000000000001000000:C350 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 22222 1 0000000000000000 20 4 30 10 -1',
  '   2: 0000000000000000FFFF00000100007F:C351 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 33333 1 0000000000000000 20 4 30 10 -1',
  '   3: B80D0120000000000000000005000000:C352 B80D0120000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000    65534        0 44444 1 0000000000000000 20 4 30 10 -1',
  ''
].join('\n')

t.test('the owner of a loopback IPv6 connection, read from a /proc/net/tcp6 row', async t => {
  t.equal(ownerInTable(TCP6, { remoteAddress: '::1', remotePort: 50000, localAddress: '::1', localPort: 8080 }), 1000, '::1 → ::1:8080')
  t.equal(ownerInTable(TCP6, { remoteAddress: '::ffff:127.0.0.1', remotePort: 50001, localAddress: '::ffff:127.0.0.1', localPort: 8080 }), 1001, 'IPv4-mapped addresses, as a dual-stack listener names them')
  t.equal(ownerInTable(TCP6, { remoteAddress: '2001:db8::5', remotePort: 50002, localAddress: '2001:DB8::1', localPort: 8080 }), 65534, 'a compressed address, in either case')
  t.equal(ownerInTable(TCP6, { remoteAddress: '::1', remotePort: 50003, localAddress: '::1', localPort: 8080 }), undefined, 'no row for another port')
  t.equal(ownerInTable(TCP6, { remoteAddress: '::1', remotePort: 8080, localAddress: '::1', localPort: 50000 }), undefined, 'the server\'s own row (ends swapped) is not the client\'s')
  t.equal(ownerInTable(TCP6, { remotePort: 50000, localAddress: '::1', localPort: 8080 }), undefined, 'no remote address: no owner')
  t.equal(ownerInTable('header only\n', { remoteAddress: '::1', remotePort: 50000, localAddress: '::1', localPort: 8080 }), undefined)
})
