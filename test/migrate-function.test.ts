/**
 * The upsert function installed by 0005 (issue 3): 32 concurrent first saves for one user_id
 * give no error and one row; the incident's UPDATE-then-INSERT function fails the same race (a
 * test that expects its failure); a row of another tenant is never overwritten (TSM01 →
 * tenant_mismatch); a NULL user_id raises not_null_violation.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type pg from 'pg';
import { classifyError } from '../src/db/classify.js';
import { createTestDatabase } from './helpers/db.js';
import { incidentRacyFunction } from './helpers/fixtures.js';
import { migrate } from './helpers/migrate.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
const CALLS = 32;
const BARRIER = 424242;

let clients: pg.Client[] = [];

before(async () => {
  for (const schema of ['fixed', 'racy']) {
    const r = await migrate(db.url, ['up', '--schema', schema]);
    assert.equal(r.code, 0, r.stderr);
  }
  await db.sql(incidentRacyFunction('racy'));
  clients = await Promise.all(Array.from({ length: CALLS }, () => db.client()));
});

interface Race {
  errors: string[];
  rows: number;
  ids: Set<string>;
  /** The most calls that were inside the function's transaction at one instant (server clock). */
  overlap: number;
}

/** The largest number of [start, end] intervals that contain one instant. */
function maxOverlap(intervals: { t0: number; t1: number }[]): number {
  const events = intervals.flatMap((i) => [
    { t: i.t0, d: 1 },
    { t: i.t1, d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of events) {
    now += e.d;
    most = Math.max(most, now);
  }
  return most;
}

/**
 * CALLS connections call the function for one fresh user_id at the same moment: each first waits
 * on a shared advisory lock the test holds, and all are released together. With `holdMs` each
 * call runs inside a transaction that stays open that long afterwards, as when an application
 * saves the session as part of a larger transaction: then the first insert is still uncommitted
 * while the other calls run, which is exactly the window an UPDATE-then-INSERT body loses in.
 * (Without it, on a 2-core machine the first call often commits before the others even wake up.)
 */
async function race(schema: string, user: string, holdMs = 0): Promise<Race> {
  const gate = await db.client();
  await gate.query('SELECT pg_advisory_lock($1)', [BARRIER]);
  const calls = clients.map((c, i) =>
    c
      .query(
        `SELECT pg_advisory_xact_lock_shared(${BARRIER}); SELECT extract(epoch FROM clock_timestamp())::float8 AS t0;` +
          ` SELECT "${schema}".upsert_telegram_session('t-1', '${user}', 'session-${i}', 'k1', 'active') AS id;` +
          ` SELECT pg_sleep(${holdMs / 1000}); SELECT extract(epoch FROM clock_timestamp())::float8 AS t1`,
      )
      .then((res) => {
        const r = res as unknown as pg.QueryResult[];
        return { ok: true as const, id: String(r[2]!.rows[0].id), t0: Number(r[1]!.rows[0].t0), t1: Number(r[4]!.rows[0].t1) };
      })
      .catch((err: unknown) => ({ ok: false as const, error: `${classifyError(err).code} (${classifyError(err).sqlstate})` })),
  );
  // Wait until every call is queued on the gate, then open it.
  await waitFor(`all ${CALLS} calls queued on the gate`, async () =>
    (await gate.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1`, [BARRIER])).rows[0].n === CALLS,
  );
  await gate.query('SELECT pg_advisory_unlock($1)', [BARRIER]);
  const results = await Promise.all(calls);
  await gate.end();
  const rows = (await db.sql(`SELECT count(*)::int AS n FROM "${schema}".telegram_sessions WHERE user_id = $1`, [user])).rows[0].n;
  return {
    errors: results.flatMap((r) => (r.ok ? [] : [r.error])),
    rows,
    ids: new Set(results.flatMap((r) => (r.ok ? [r.id] : []))),
    overlap: maxOverlap(results.flatMap((r) => (r.ok ? [{ t0: r.t0, t1: r.t1 }] : []))),
  };
}

describe('upsert_telegram_session installed by tsm migrate', () => {
  it(`${CALLS} concurrent first saves for one user_id: no error, one row, one id (10 rounds, half of them inside 20 ms transactions)`, async (t) => {
    const overlaps: number[] = [];
    for (let round = 1; round <= 10; round++) {
      const hold = round % 2 === 0 ? 20 : 0;
      const r = await race('fixed', `race-${round}`, hold);
      assert.deepEqual(r.errors, [], `round ${round}`);
      assert.equal(r.rows, 1, `round ${round}: rows`);
      assert.equal(r.ids.size, 1, `round ${round}: every call returned the same id`);
      overlaps.push(r.overlap);
      // The race really happened: calls were inside their transactions at the same time.
      // With the 20 ms transactions the calls must overlap; without, a loaded 2-core machine may
      // run them nearly one after the other (the count is still reported below).
      if (hold > 0) assert.ok(r.overlap >= 2, `round ${round}: the calls never overlapped on the server (at most ${r.overlap} at once)`);
    }
    t.diagnostic(`most calls inside the function at once, per round: ${overlaps.join(', ')}`);
  });

  it("the incident's UPDATE-then-INSERT function fails the same race (expected failure)", async () => {
    const failures: string[] = [];
    for (let round = 1; round <= 10 && failures.length === 0; round++) {
      const r = await race('racy', `race-${round}`, round % 2 === 0 ? 20 : 0);
      if (r.errors.length > 0 || r.rows !== 1) failures.push(`round ${round}: ${r.errors.length} errors (${[...new Set(r.errors)].join(', ')}), ${r.rows} rows`);
    }
    assert.ok(failures.length > 0, 'the racy function survived 10 rounds of 32 concurrent first saves');
    // It fails by round 2 at the latest: inside a transaction, all 31 losers hit the first insert.
    // With the unique index in place, the losers of the race hit it: duplicate_session (23505).
    assert.match(failures[0]!, /duplicate_session \(23505\)/);
  });

  it('a second save updates the row in place: same id, new values, updated_at moves', async () => {
    const c = clients[0]!;
    const first = (await c.query(`SELECT fixed.upsert_telegram_session('t-1', 'upd', 'one', 'k1') AS id`)).rows[0].id;
    const t1 = (await c.query(`SELECT updated_at FROM fixed.telegram_sessions WHERE id = $1`, [first])).rows[0].updated_at;
    const second = (await c.query(`SELECT fixed.upsert_telegram_session('t-1', 'upd', 'two', 'k2', 'active', 'auth_key_unregistered', 'details') AS id`)).rows[0].id;
    assert.equal(second, first);
    const row = (await c.query(`SELECT session_string_enc, key_id, status, auth_error, error_details, updated_at FROM fixed.telegram_sessions WHERE id = $1`, [first])).rows[0];
    assert.deepEqual({ ...row, updated_at: undefined }, {
      session_string_enc: 'two', key_id: 'k2', status: 'active', auth_error: 'auth_key_unregistered', error_details: 'details', updated_at: undefined,
    });
    assert.ok(row.updated_at >= t1);
  });

  it('another tenant: TSM01 (tenant_mismatch), the row is not changed', async () => {
    const c = clients[0]!;
    await c.query(`SELECT fixed.upsert_telegram_session('tenant-a', 'shared-user', 'a-session', 'ka', 'active')`);
    const beforeRow = (await c.query(`SELECT t::text AS r FROM fixed.telegram_sessions t WHERE user_id = 'shared-user'`)).rows;
    const err = await c.query(`SELECT fixed.upsert_telegram_session('tenant-b', 'shared-user', 'b-session', 'kb', 'active')`).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err, 'the call must fail');
    assert.equal((err as { code?: string }).code, 'TSM01');
    assert.equal(classifyError(err).code, 'tenant_mismatch');
    assert.equal(classifyError(err).retryable, false);
    assert.match((err as Error).message, /user_id shared-user belongs to another tenant/);
    const afterRow = (await c.query(`SELECT t::text AS r FROM fixed.telegram_sessions t WHERE user_id = 'shared-user'`)).rows;
    assert.deepEqual(afterRow, beforeRow, 'tenant-a keeps its row, unchanged');
  });

  it('a NULL user_id: not_null_violation (missing_required_field), no row added', async () => {
    const c = clients[0]!;
    const n = async () => (await c.query(`SELECT count(*)::int AS n FROM fixed.telegram_sessions`)).rows[0].n;
    const before = await n();
    const err = await c.query(`SELECT fixed.upsert_telegram_session('t-1', NULL, 's', 'k1')`).then(() => null, (e: unknown) => e);
    assert.equal((err as { code?: string }).code, '23502');
    assert.equal(classifyError(err).code, 'missing_required_field');
    assert.equal(await n(), before);
  });

  it('defaults: status pending, diagnostics NULL; a NULL status becomes pending', async () => {
    const c = clients[0]!;
    await c.query(`SELECT fixed.upsert_telegram_session('t-1', 'defaults', 's', 'k1')`);
    await c.query(`SELECT fixed.upsert_telegram_session('t-1', 'null-status', 's', 'k1', NULL)`);
    const rows = (await c.query(`SELECT user_id, status, auth_error, error_details FROM fixed.telegram_sessions WHERE user_id IN ('defaults', 'null-status') ORDER BY 1`)).rows;
    assert.deepEqual(rows, [
      { user_id: 'defaults', status: 'pending', auth_error: null, error_details: null },
      { user_id: 'null-status', status: 'pending', auth_error: null, error_details: null },
    ]);
  });
});
