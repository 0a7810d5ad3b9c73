/**
 * THE retry/backoff module: bounded exponential backoff with jitter, a sleep that an AbortSignal
 * cuts short, and a retry-on-predicate loop. SessionStore (retryable save errors), dedupe (a batch
 * that hit a lock timeout, a deadlock or a serialization failure) and the migrate engine (DDL that
 * could not get its lock) each pick a policy; the arithmetic lives here only.
 */

/** What a caller may set (SessionStore's public `retry` option has exactly these fields). */
export interface RetryOptions {
  /** Attempts in all, the first one included (1 = no retry). */
  attempts?: number;
  /** Delay before the first retry, in ms; doubled for each later one. */
  baseDelayMs?: number;
  /** Upper bound of any one delay (before jitter), in ms. */
  maxDelayMs?: number;
}

/**
 * How a delay is spread so that clients that failed together do not all come back at the same
 * instant: `equal` keeps half of it fixed and draws the other half at random (d/2 … d); a number
 * `j` draws from d·(1 − j) … d·(1 + j); `none` waits exactly d.
 */
export type Jitter = 'equal' | 'none' | number;

export interface RetryPolicy {
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly jitter: Jitter;
}

/** SessionStore's default: three attempts, 50 ms then 100 ms (equal jitter), never more than 2 s. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 50, maxDelayMs: 2000, jitter: 'equal' };

/** `o` over `defaults` (undefined fields ignored), validated: RangeError on nonsense. */
export function retryPolicy(o: RetryOptions | undefined, defaults: RetryPolicy = DEFAULT_RETRY): RetryPolicy {
  const given = Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as RetryOptions;
  const p: RetryPolicy = { ...defaults, ...given };
  if (!Number.isSafeInteger(p.attempts) || p.attempts < 1 || p.attempts > 100) {
    throw new RangeError(`retry.attempts must be an integer 1 … 100, got ${p.attempts}`);
  }
  for (const k of ['baseDelayMs', 'maxDelayMs'] as const) {
    if (!Number.isFinite(p[k]) || p[k] < 0 || p[k] > 600_000) throw new RangeError(`retry.${k} must be 0 … 600000, got ${p[k]}`);
  }
  if (typeof p.jitter === 'number' && !(p.jitter >= 0 && p.jitter <= 1)) {
    throw new RangeError(`retry.jitter must be 'equal', 'none' or a fraction 0 … 1, got ${p.jitter}`);
  }
  return p;
}

/** The delay before retry number `retry` (1 = the first retry) before jitter: base·2^(retry−1), capped. */
export function plainDelay(retry: number, p: RetryPolicy): number {
  return Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** Math.min(Math.max(retry - 1, 0), 30));
}

/** The delay before retry number `retry` (1 = the first retry), jitter applied. */
export function backoffDelay(retry: number, p: RetryPolicy, random: () => number = Math.random): number {
  const d = plainDelay(retry, p);
  if (p.jitter === 'none') return d;
  if (p.jitter === 'equal') return d / 2 + random() * (d / 2);
  return d * (1 - p.jitter + 2 * p.jitter * random());
}

/** The longest all the pauses of one retried operation can add up to (for messages and bounds). */
export function maxTotalDelay(p: RetryPolicy): number {
  const spread = typeof p.jitter === 'number' ? 1 + p.jitter : 1;
  let total = 0;
  for (let r = 1; r < p.attempts; r++) total += plainDelay(r, p) * spread;
  return total;
}

/** Resolves after `ms`, or at once when `signal` is (or becomes) aborted. Never rejects. */
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

export interface RetryLoop {
  policy: RetryPolicy;
  /** Whether a failure of attempt `attempt` (1-based) is worth another attempt. */
  retryOn(err: unknown, attempt: number): boolean;
  /** No new attempt once aborted: the last error is thrown instead. */
  signal?: AbortSignal;
  /** Called before each pause (for logs: "lock timeout, retrying in 400 ms"). */
  onRetry?(err: unknown, attempt: number, delayMs: number): void;
  random?: () => number;
}

/**
 * Runs `fn(attempt)` until it resolves, the error is not retryable, the attempts are used up or
 * the signal is aborted; then rethrows the last error.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, loop: RetryLoop): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= loop.policy.attempts || loop.signal?.aborted || !loop.retryOn(err, attempt)) throw err;
      const delay = backoffDelay(attempt, loop.policy, loop.random);
      loop.onRetry?.(err, attempt, delay);
      await sleep(delay, loop.signal);
      if (loop.signal?.aborted) throw err;
    }
  }
}
