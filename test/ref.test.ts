import t from 'tap'
import { parseRef } from '../src/chunks/ref.js'
import { InvalidRefError } from '../src/errors.js'

const hex = 'ab'.repeat(32)

t.test('refs: full digest, prefix, manifest CID', async t => {
  t.same(parseRef(`sha256:${hex}`), { kind: 'digest', hex })
  t.same(parseRef(hex.toUpperCase()), { kind: 'digest', hex }, 'bare and upper-case hex')
  t.same(parseRef('sha256:abababababab'), { kind: 'prefix', hex: 'abababababab' })
  const r = parseRef('bafyreicmn7e5x52bzxih6majtuucrgioecjn6j4qhgcyj3ct7quovmwrbu')
  t.equal(r.kind, 'manifest')
})

t.test('malformed refs are refused with the reason', async t => {
  t.throws(() => parseRef('abcdef'), /prefix needs 12/)
  t.throws(() => parseRef('sha256:xyz'), InvalidRefError)
  t.throws(() => parseRef(''), /empty/)
  t.throws(() => parseRef('not-a-ref!'), /expected sha256/)
  t.throws(() => parseRef(hex + 'ab'), InvalidRefError, '66 digits')
})
