/**
 * The origin layer's public surface: the interface plug-ins implement, the built-in backends, the
 * opener that picks one by URL, and the resumable reader that plug-in authors may reuse.
 */
export type {
  Origin, OriginCallOptions, OriginCapabilities, OriginFactory, OriginReadOptions, OriginStat, OriginTuning,
  OriginWriteOptions
} from './origin.js'
export { MAX_MANIFEST_BYTES, MAX_PROFILE_ENCODED, imageKey, manifestKey, profileKey, isImageHex } from './origin.js'
export { openOrigin, type OpenOriginOptions } from './open-origin.js'
export { fileOrigin, type FileOriginOptions } from './file-origin.js'
export { httpOrigin, type HttpOriginOptions } from './http-origin.js'
export { s3Origin, type S3OriginOptions } from './s3-origin.js'
export { resumableRead, type OpenedRange, type RangeSource } from './resumable-read.js'
export { glanceOrigin, GlanceOrigin, checkedAgainst, isGlanceId, type GlanceOriginOptions, type GlanceImage, type GlanceCallOptions } from './glance-origin.js'
