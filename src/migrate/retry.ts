/**
 * The retry policy for DDL that cannot get its lock in time. Every migration runs with the
 * session's `lock_timeout` (`--lock-timeout`, default 5s), so a statement never queues all traffic
 * behind a long transaction for longer than that. On `lock_not_available` (55P03) or a deadlock
 * (40P01) the migration's transaction is rolled back and the whole migration is run again after a
 * backoff. Migrations converge (they look at the current state first), so running one again is
 * safe; an INVALID index left by a failed concurrent build is dropped before the rebuild.
 */
import { classifyError } from '../db/classify.js';

export const RETRY = {
  /** Attempts per migration, the first included. */
  attempts: 6,
  /** Backoff before attempt n+1: base · 2^(n-1), capped, ±20 % jitter. */
  baseDelayMs: 200,
  maxDelayMs: 3200,
} as const;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The pause after failed attempt `attempt` (1-based). */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(RETRY.baseDelayMs * 2 ** (attempt - 1), RETRY.maxDelayMs);
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** The longest a migration can spend retrying, for messages: attempts × lock_timeout + all pauses. */
export function retryBoundMs(lockTimeoutMs: number): number {
  let pauses = 0;
  for (let a = 1; a < RETRY.attempts; a++) pauses += Math.min(RETRY.baseDelayMs * 2 ** (a - 1), RETRY.maxDelayMs) * 1.2;
  return RETRY.attempts * lockTimeoutMs + Math.round(pauses);
}

/** lock_not_available or deadlock_detected: worth another attempt. */
export function isLockFailure(err: unknown): boolean {
  const c = classifyError(err);
  return c.sqlstate === '55P03' || c.sqlstate === '40P01';
}
