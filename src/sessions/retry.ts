/** Bounded exponential backoff with jitter, and a sleep that an AbortSignal cuts short. */

export interface RetryOptions {
  /** Attempts in all, the first one included (default 3; 1 = no retry). */
  attempts?: number;
  /** Delay before the first retry, in ms (default 50); doubled each time. */
  baseDelayMs?: number;
  /** Upper bound of any one delay, in ms (default 2000). */
  maxDelayMs?: number;
}

export type RetryPolicy = Required<RetryOptions>;

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 50, maxDelayMs: 2000 };

export function retryPolicy(o: RetryOptions | undefined): RetryPolicy {
  const p = { ...DEFAULT_RETRY, ...Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) };
  if (!Number.isSafeInteger(p.attempts) || p.attempts < 1 || p.attempts > 100) {
    throw new RangeError(`retry.attempts must be an integer 1 … 100, got ${p.attempts}`);
  }
  for (const k of ['baseDelayMs', 'maxDelayMs'] as const) {
    if (!Number.isFinite(p[k]) || p[k] < 0 || p[k] > 600_000) throw new RangeError(`retry.${k} must be 0 … 600000, got ${p[k]}`);
  }
  return p;
}

/**
 * The wait before retry number `retry` (1 = the first retry): base·2^(retry−1), capped at
 * maxDelayMs, then "equal jitter": half of it fixed, half random, so clients that failed together
 * do not all come back at the same instant.
 */
export function backoffDelay(retry: number, p: RetryPolicy, random: () => number = Math.random): number {
  const capped = Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** Math.min(retry - 1, 30));
  return capped / 2 + random() * (capped / 2);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
