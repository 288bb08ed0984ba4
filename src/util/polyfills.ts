/**
 * Runtime features that libp2p 3 uses but Node 20 lacks. Node 20 has no `Promise.withResolvers`
 * (it came in Node 22); libp2p 3, yamux and `@libp2p/utils` call it on every dial and stream, and
 * without it a dial fails with a misleading `ECONNRESET` (the noise handshake throws
 * `Promise.withResolvers is not a function` inside the upgrader).
 *
 * Import this module for its side effect as the **first** import of every entry point that can load
 * libp2p: `bin/imgswarm`'s CLI main, the daemon, each test and each benchmark:
 *
 * ```ts
 * import '../util/polyfills.js'
 * ```
 *
 * ES modules are evaluated in import order, depth first, so a first import runs before any later
 * import is evaluated. `src/peer/libp2p-node.ts` imports it too, so code that creates a node through
 * it is covered even when an entry point forgets. Each polyfill is installed only when the feature
 * is missing, so on Node 22+ this module does nothing.
 */

interface Resolvers<T> {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

const P = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> }

if (typeof P.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    // A method, not an arrow function: like the built-in, it constructs `this` so subclasses work.
    value: function withResolvers<T> (this: PromiseConstructor): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve']
      let reject!: Resolvers<T>['reject']
      const promise = new this<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}

export {}
