/**
 * test-write's race: `concurrency` connections save the same user id at the same moment, for
 * `rounds` rounds; each round races on a fresh user id (the insert race), then again on that id
 * (the update race). Before each race every connection of the pool is connected and idle, and the
 * calls wait on one barrier, so their statements reach the server together and really overlap.
 * rows_left is the largest number of rows any race user id ended with: it must be 1.
 */
import type { ClientBase, Pool, PoolClient } from 'pg';
import { makeSessionString } from '../../../store/session-string.js';
import type { SaveResult, SessionStore } from '../../../store/store.js';
import { NOTHING_THERE, TestRows } from '../../test-rows.js';

export interface RaceReport {
  concurrency: number;
  rounds: number;
  calls: number;
  errors: Record<string, number>;
  rows_left: number;
  ok: boolean;
}

export interface RaceContext {
  store: SessionStore;
  pool: Pool;
  admin: ClientBase;
  rows: TestRows;
  signal: AbortSignal;
  /** Throws when the run was interrupted (checked between races). */
  check(): void;
  /** One example per error code (for the human output). */
  details?: Map<string, { sqlstate: string | null; message: string }>;
}

export const RACE_SESSION_LENGTH = 800;

/** Checks out `n` connections at once and returns them to the pool, so `n` idle ones are ready. */
async function warm(pool: Pool, n: number): Promise<void> {
  const got = await Promise.allSettled(Array.from({ length: n }, () => pool.connect()));
  for (const g of got) if (g.status === 'fulfilled') (g.value as PoolClient).release();
}

/** Starts all calls in the same tick, once every caller has reached the barrier. */
async function together<T>(n: number, call: (i: number) => Promise<T>): Promise<T[]> {
  let open!: () => void;
  const barrier = new Promise<void>((resolve) => (open = resolve));
  const calls = Array.from({ length: n }, async (_, i) => {
    await barrier;
    return call(i);
  });
  open();
  return Promise.all(calls);
}

export async function runRace(concurrency: number, rounds: number, ctx: RaceContext): Promise<RaceReport> {
  const { store, pool, rows, signal } = ctx;
  const sessions = Array.from({ length: concurrency }, () => makeSessionString(RACE_SESSION_LENGTH));
  const errors: Record<string, number> = {};
  const raceIds: string[] = [];
  let calls = 0;
  // Whether any race row may exist: some save succeeded, or a connection broke with the outcome unknown.
  let wrote = false;
  const tally = (results: SaveResult[]): void => {
    for (const r of results) {
      calls++;
      if (r.ok || r.code === 'connection_error') wrote = true;
      if (!r.ok) {
        errors[r.code] = (errors[r.code] ?? 0) + 1;
        if (ctx.details && !ctx.details.has(r.code)) ctx.details.set(r.code, { sqlstate: r.sqlstate, message: r.details });
      }
    }
  };

  for (let round = 1; round <= rounds; round++) {
    ctx.check();
    const userId = rows.next();
    raceIds.push(userId);
    for (const status of ['pending', 'authorized']) {
      ctx.check();
      await warm(pool, concurrency);
      tally(
        await together(concurrency, (i) =>
          store.save({ tenantId: rows.tenant, userId, sessionStringEnc: sessions[i]!, keyId: `tsm-test-key-race-${i + 1}`, status }, { signal }),
        ),
      );
    }
  }
  let counts: number[] = raceIds.map(() => 0);
  try {
    if (wrote) counts = await TestRows.counts(ctx.admin, rows.schema, raceIds);
  } catch (err) {
    // No table (or schema) at all: every call failed already, and no row was left.
    const state = (err as { code?: unknown }).code;
    if (typeof state !== 'string' || !NOTHING_THERE.has(state)) throw err;
  }
  const rowsLeft = counts.reduce((m, n) => Math.max(m, n), 0);
  return { concurrency, rounds, calls, errors, rows_left: rowsLeft, ok: Object.keys(errors).length === 0 && rowsLeft === 1 };
}
