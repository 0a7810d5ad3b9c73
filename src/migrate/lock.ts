/**
 * tsm's own advisory lock, one per (database, schema), held on a separate idle connection for the
 * whole `migrate up` / `down`. It is taken by polling `pg_try_advisory_lock` with a short sleep,
 * never with a blocking `pg_advisory_lock()`: a session waiting in pg_advisory_lock holds a
 * snapshot, and the other process's CREATE INDEX CONCURRENTLY then waits for that snapshot while
 * the waiter waits for the lock — a deadlock (reproduced on PostgreSQL 15). Its key is not
 * node-pg-migrate's (7241865325823964), so it never collides with the application's migrations.
 */
import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import { FailError } from '../errors.js';
import { sleep } from './retry.js';

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
  release(): Promise<void>;
}

/**
 * Polls until the lock is ours or `waitMs` has passed (then FailError: nothing was applied).
 * `client` is dedicated to the lock: it stays idle (no transaction, no snapshot) while held.
 */
export async function acquireLock(
  client: Client,
  schema: string,
  waitMs: number,
  log: (line: string) => void,
  pollMs = 200,
): Promise<Acquired> {
  const key = lockKey(schema);
  const started = Date.now();
  let announced = false;
  for (;;) {
    const r = await client.query('SELECT pg_catalog.pg_try_advisory_lock($1::bigint) AS ok', [key]);
    if (r.rows[0].ok === true) {
      return {
        waitedMs: Date.now() - started,
        release: async () => {
          await client.query('SELECT pg_catalog.pg_advisory_unlock($1::bigint)', [key]).catch(() => {});
        },
      };
    }
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
      );
    }
    await sleep(Math.min(pollMs, Math.max(1, waitMs - waited)));
  }
}

export function fmtMs(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
}
