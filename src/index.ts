/**
 * imgswarm as a library: the same operations the CLI runs, for programs written in TypeScript.
 *
 * @example
 * import { LocalNode } from 'imgswarm'
 * const node = await LocalNode.open({ dir: '/var/lib/imgswarm' })
 * const { record } = await node.importFile('vmlinuz', { meta: { type: 'kernel' } })
 * await node.export(record.ref, '/tmp/vmlinuz')
 * await node.close()
 */
export { LocalNode, type ImageDetails, type ImportOptions, type ProgressOptions } from './local-node.js'
export type { ImageRecord, ImageState } from './store/image-record.js'
export type { ChunkStore, AbortOptions } from './store/chunk-store.js'
export type { GcResult, OpenStoreOptions } from './store/level-store.js'
export type { VerifyReport, VerifyProblem } from './store/verify.js'
export type { ImageMeta, ImageType, Manifest } from './chunks/manifest.js'
export { DEFAULT_CHUNKER, type ChunkerParams } from './chunks/fastcdc.js'
export { parseImageNaming, parseRef, type ImageNaming, type ImageRef } from './chunks/ref.js'
export * from './origin/index.js'
export { Daemon, type DaemonInfo } from './daemon/daemon.js'
export { loadConfig, defaultConfig, type FlagValues, type LoadConfigOptions } from './node/config.js'
export type { NodeConfig } from './node/options.js'
export { ApiClient } from './api/client.js'
export { parseApiAddress, type ApiAddress } from './api/address.js'
export type { ImageService } from './service.js'
export { publishImage, publishTo, type PublishResult } from './publish.js'
export { generateOperatorKey, loadSigner, loadPublicKey, keyFingerprint, type BundleSigner } from './bundle/operator-key.js'
export { inspectBundle, type BundleInspection } from './bundle/bundle-inspect.js'
export type { BundleImportResult, ImportBundleOptions } from './bundle/bundle-import.js'
export type { WriteBundleOptions } from './bundle/bundle-writer.js'
export type { BundleImage, BundleSummary } from './bundle/summary.js'
export * from './errors.js'
