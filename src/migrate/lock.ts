/**
 * tsm's two kinds of locks.
 *
 * 1. Its own advisory lock, one per (database, schema), held by the session that runs the
 *    migrations for the whole `migrate up` / `down`: every migration then runs on the backend that
 *    holds it, which tsm checks inside each migration's transaction (session.ts), so the lock
 *    cannot protect one server connection while the work happens on another (a transaction-mode
 *    pooler). It is taken by polling `pg_try_advisory_lock` on the idle session, never with a
 *    blocking `pg_advisory_lock()`: a session waiting in pg_advisory_lock holds a snapshot, and the
 *    other process's CREATE INDEX CONCURRENTLY then waits for that snapshot while the waiter waits
 *    for the lock — a deadlock (reproduced on PostgreSQL 15). Its key is not node-pg-migrate's
 *    (7241865325823964), so it never collides with the application's migrations.
 * 2. The table locks DDL needs, under `lock_timeout` with retries (the lock queue, below).
 */
import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import { classifyError } from '../db/classify.js';
import { maxTotalDelay, sleep, type RetryPolicy } from '../db/retry.js';
import { FailError } from '../errors.js';

/** A signed 64-bit key derived from 'tsm migrate' and the schema (decimal string, for ::bigint). */
export function lockKey(schema: string): string {
  const digest = createHash('sha256').update(`tsm migrate\0${schema}`).digest();
  return digest.readBigInt64BE(0).toString();
}

export interface Holder {
  pid: number;
  application_name: string;
  state: string | null;
  /** seconds since its backend started */
  seconds: number | null;
}

/** Who holds the lock right now (pg_locks splits a bigint key into classid = high, objid = low 32 bits). */
export async function lockHolder(client: Client, key: string): Promise<Holder | null> {
  const r = await client.query(
    `SELECT l.pid, coalesce(a.application_name, '') AS application_name, a.state,
            round(extract(epoch FROM now() - a.backend_start))::int AS seconds
       FROM pg_catalog.pg_locks l
       LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
        AND l.classid::bigint = (($1::bigint >> 32) & 4294967295)
        AND l.objid::bigint = ($1::bigint & 4294967295)
      LIMIT 1`,
    [key],
  );
  return (r.rows[0] as Holder | undefined) ?? null;
}

export interface Acquired {
  /** How long we waited for another tsm migrate, in ms. */
  waitedMs: number;
  /** The backend that holds the lock. */
  pid: number;
}

/** Ctrl-C reached the engine: no statement was started after it (`where` says what it stopped). */
export class Interrupted extends Error {
  constructor(readonly where: 'lock' | 'work' = 'work') {
    super(where === 'lock' ? 'stopped while waiting for the migration lock' : 'interrupted');
  }
}

/**
 * Polls until the lock is ours or `waitMs` has passed (then FailError: nothing was applied), or
 * until `signal` is aborted (Interrupted). `client` is the migrating session, idle (no
 * transaction, no snapshot) while it polls.
 */
export async function acquireLock(
  client: Client,
  schema: string,
  waitMs: number,
  log: (line: string) => void,
  signal?: AbortSignal,
  pollMs = 200,
): Promise<Acquired> {
  const key = lockKey(schema);
  const started = Date.now();
  let announced = false;
  for (;;) {
    if (signal?.aborted) throw new Interrupted('lock');
    const r = await client.query<{ ok: boolean; pid: number }>('SELECT pg_catalog.pg_try_advisory_lock($1::bigint) AS ok, pg_catalog.pg_backend_pid() AS pid', [key]);
    const row = r.rows[0]!;
    if (row.ok) return { waitedMs: Date.now() - started, pid: row.pid };
    const waited = Date.now() - started;
    if (!announced) {
      const h = await lockHolder(client, key).catch(() => null);
      log(`tsm migrate: another tsm migrate holds the lock for schema ${schema}${h ? ` (pid ${h.pid})` : ''}; waiting up to ${fmtMs(waitMs)} (--lock-wait)`);
      announced = true;
    }
    if (waited >= waitMs) {
      const h = await lockHolder(client, key).catch(() => null);
      const who = h ? ` (pid ${h.pid}, ${h.application_name || 'no application_name'}, connected ${h.seconds ?? '?'} s ago)` : '';
      throw new FailError(
        `another tsm migrate holds the migration lock for schema ${schema}${who}; gave up after ${fmtMs(waited)} (--lock-wait ${fmtMs(waitMs)}); nothing was applied`,
        { code: 'lock_wait' },
      );
    }
    await sleep(Math.min(pollMs, Math.max(1, waitMs - waited)), signal);
  }
}

/**
 * Releases the lock held by backend `pid`. Only runs the unlock on that backend: if the
 * connection now reaches another one (a pooler moved it), the unlock is not sent there, and the
 * answer is false.
 */
export async function releaseLock(client: Client, schema: string, pid: number): Promise<boolean> {
  const r = await client.query<{ released: boolean | null }>(
    'SELECT CASE WHEN pg_catalog.pg_backend_pid() = $2::int THEN pg_catalog.pg_advisory_unlock($1::bigint) END AS released',
    [lockKey(schema), pid],
  );
  return r.rows[0]?.released === true;
}

export function fmtMs(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
}

// ---------------------------------------------------------------------------------------------
// The lock queue

/**
 * The pauses between attempts (the CLI's defaults for --lock-timeout and --lock-retries live in
 * src/cli/commands/migrate/flags.ts; bench/lock-queue measured them): an ALTER TABLE waiting for
 * its lock makes every later writer of the table wait behind it, for as long as it waits. Between
 * attempts the writers run freely for the pause (as long as the wait at first, growing to
 * PAUSE_MAX_MS), and a migration whose blocker ends within the retries gets through at the next
 * attempt.
 */
export const PAUSE_BASE_MS = 500;
export const PAUSE_MAX_MS = 5000;

/** The pauses between attempts of a migration that could not get its lock: 0.5 s doubling to 5 s, ±20 %. */
export function lockRetryPolicy(retries: number): RetryPolicy {
  return { attempts: retries + 1, baseDelayMs: PAUSE_BASE_MS, maxDelayMs: PAUSE_MAX_MS, jitter: 0.2 };
}

/** The longest a migration can spend retrying, for messages and tests: every attempt's wait + all pauses. */
export function retryBoundMs(lockTimeoutMs: number, retries: number): number {
  return (retries + 1) * lockTimeoutMs + Math.round(maxTotalDelay(lockRetryPolicy(retries)));
}

/** lock_not_available or deadlock_detected: worth another attempt. */
export function isLockFailure(err: unknown): boolean {
  const c = classifyError(err);
  return c.sqlstate === '55P03' || c.sqlstate === '40P01';
}
