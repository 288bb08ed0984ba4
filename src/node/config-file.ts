import { readFile } from 'node:fs/promises'
import { UsageError } from '../errors.js'

/**
 * Reads a JSON config file: one object whose keys are all in `known` (a typo is refused with the
 * list, rather than silently ignored). A missing file is an empty config unless `required`.
 */
export async function readConfigFile (path: string, required: boolean, known: readonly string[]): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new UsageError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`config file ${path} is not valid JSON: ${(err as Error).message}`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`config file ${path} must hold a JSON object`)
  for (const k of Object.keys(parsed)) if (!known.includes(k)) throw new UsageError(`config file ${path}: unknown key "${k}" (known: ${known.join(', ')})`)
  return parsed as Record<string, unknown>
}
