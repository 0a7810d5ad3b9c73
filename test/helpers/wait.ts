/**
 * Two shapes that keep tests deterministic:
 * - settle(): a promise started now whose outcome is read later gets its handlers attached at
 *   once, so a rejection that arrives while the test awaits something else is never "unhandled";
 * - waitFor(): polling for a state fails the test with a message when the state never comes,
 *   instead of giving up silently and letting the test pass without the situation it set up.
 */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Attaches both handlers now; the returned promise never rejects. */
export function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value): Settled<T> => ({ ok: true, value }),
    (error: unknown): Settled<T> => ({ ok: false, error }),
  );
}

/** The value of a settled promise, or the error it rejected with rethrown. */
export async function outcome<T>(s: Promise<Settled<T>>): Promise<T> {
  const r = await s;
  if (r.ok) return r.value;
  throw r.error;
}

/** The error of a promise that must reject (fails the test when it resolves). */
export async function rejection(s: Promise<Settled<unknown>>, what = 'the operation'): Promise<unknown> {
  const r = await s;
  if (r.ok) throw new Error(`expected ${what} to fail, but it succeeded`);
  return r.error;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `probe` every `everyMs` until it returns a value other than undefined/false/null and returns
 * that value; throws `never came: <what>` after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  { timeoutMs = 10_000, everyMs = 25 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() >= deadline) throw new Error(`waited ${timeoutMs} ms, never came: ${what}`);
    await sleep(everyMs);
  }
}
