import { readFileSync } from 'node:fs'

/** The package's version, read once from its package.json (dist/src/node/ → the package root). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version
