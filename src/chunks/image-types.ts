/** What an image is for, as a spawn needs it. Apart from the manifest code, so the CLI can name it without loading CBOR. */
export const IMAGE_TYPES = ['kernel', 'ramdisk', 'machine', 'other'] as const
export type ImageType = typeof IMAGE_TYPES[number]
