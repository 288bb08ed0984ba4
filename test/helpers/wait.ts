/** Polls `check` every `everyMs` until it holds or `ms` have passed; whether it held. Bounded in time. */
export async function eventually (check: () => boolean | Promise<boolean>, ms: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
  return await check()
}
