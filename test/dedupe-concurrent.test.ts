/**
 * tsm dedupe while the application writes (issue 5): no acknowledged write is lost.
 *
 * Writers play an application without the unique index: they update one of a user's rows (the one
 * they happened to read) or insert a new row for the user, each write stamped with
 * clock_timestamp(). Each user belongs to one writer, so its writes are ordered and the last
 * acknowledged one is known. Afterwards every user must have exactly one row holding its last
 * acknowledged write, and every row ever written must be in the table or the archive, once.
 *
 * A dedupe that decided from its plan (the snapshot before the batch) instead of re-ranking the
 * rows it has locked would archive a row that was written after the plan: this test then fails.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { dedupe, type DedupeReport } from '../src/dedupe/engine.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

const USERS = 300;
const WRITERS = 4;

interface Tally {
  last: Map<string, string>;
  updates: number;
  missed: number;
  inserts: number;
  errors: string[];
}

async function writer(c: pg.Client, k: number, stop: { now: boolean }, t: Tally): Promise<void> {
  const mine = Array.from({ length: USERS }, (_, i) => i + 1).filter((i) => i % WRITERS === k);
  let seq = 0;
  while (!stop.now) {
    const user = `d-${mine[Math.floor(Math.random() * mine.length)]}`;
    const value = `w${k}-${++seq}`;
    try {
      if (Math.random() < 0.7) {
        // "The row I read": any of the user's rows.
        const r = await c.query(
          `UPDATE telegram_sessions SET session_string_enc = $1, updated_at = clock_timestamp()
            WHERE id = (SELECT id FROM telegram_sessions WHERE user_id = $2 ORDER BY random() LIMIT 1)`,
          [value, user],
        );
        if (r.rowCount === 1) {
          t.last.set(user, value);
          t.updates++;
        } else {
          t.missed++; // the row was archived between our read and our write: not acknowledged
        }
      } else {
        await c.query(
          `INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc, key_id, updated_at)
           VALUES ('t', $2, $1, 'k', clock_timestamp())`,
          [value, user],
        );
        t.last.set(user, value);
        t.inserts++;
      }
    } catch (err) {
      t.errors.push((err as Error).message);
    }
  }
}

describe('tsm dedupe with a concurrent writer', () => {
  it('loses no acknowledged write, and every row ends in exactly one place', async (t) => {
    await db.sql(`${preFixSchema('public')}
      INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc, key_id, updated_at)
      SELECT 't', 'd-' || i, 'seed-' || i || '-' || j, 'k', timestamptz '2023-01-01' + j * interval '1 day'
        FROM generate_series(1, ${USERS}) i, generate_series(1, 3) j;
      INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc, key_id)
      SELECT 't', 's-' || g, 'single', 'k' FROM generate_series(1, 2000) g;
      CREATE TABLE seeded AS SELECT id FROM telegram_sessions;`);

    const tally: Tally = { last: new Map(), updates: 0, missed: 0, inserts: 0, errors: [] };
    const stop = { now: false };
    const clients = await Promise.all(Array.from({ length: WRITERS }, () => db.client()));
    const writers = clients.map((c, k) => writer(c, k, stop, tally));
    await new Promise((r) => setTimeout(r, 100)); // writers are running before dedupe starts
    const atStart = tally.updates + tally.inserts;

    // Hundreds of 2-row batches against 4 writers: minutes on a loaded 2-core machine, so the
    // hang guard is generous (what is asserted is correctness, not speed).
    const first = await runTsm(['dedupe', '-d', db.url, '--batch-size', '2', '--json'], { timeoutMs: 600_000 });
    const during = tally.updates + tally.inserts - atStart;
    stop.now = true;
    await Promise.all(writers);

    assert.ok([0, 1].includes(first.code ?? -1), `exit ${first.code} (${first.signal ?? 'no signal'}): ${first.stderr}`);
    const j = first.json();
    t.diagnostic(
      `writes during dedupe: ${during} (updates ${tally.updates}, inserts ${tally.inserts}, updates that found their row archived ${tally.missed}); ` +
        `dedupe: exit ${first.code}, archived ${j.archived} in ${j.batches} batches / ${j.passes} passes, skipped busy ${j.skipped_busy}, ` +
        `table difference ${j.conservation.difference}`,
    );
    assert.equal(j.verification.ok, true, 'every row this run moved is in the archive once and gone from the table');
    assert.ok(j.archived >= USERS * 2, `archived ${j.archived}`);
    assert.ok(j.batches >= USERS / 2, 'many small transactions, so the writers interleave with them');
    assert.deepEqual(tally.errors, [], 'the writers never failed (no deadlock, no lock timeout)');
    assert.ok(during >= 200, `only ${during} writes happened while dedupe ran: the test proves nothing`);

    // Writers have stopped: finish what they left (new duplicates inserted after the last pass).
    const second = await runTsm(['dedupe', '-d', db.url, '--json']);
    assert.equal(second.code, 0, second.stderr);

    const rows = (await db.sql(`SELECT user_id, count(*)::int AS n, max(session_string_enc) AS value
        FROM telegram_sessions WHERE user_id LIKE 'd-%' GROUP BY user_id`)).rows;
    assert.equal(rows.length, USERS, 'every user still has a row');
    const lost: string[] = [];
    for (const r of rows) {
      assert.equal(r.n, 1, `${r.user_id} has ${r.n} rows`);
      const want = tally.last.get(r.user_id);
      if (want !== undefined && r.value !== want) lost.push(`${r.user_id}: table has ${r.value}, last acknowledged write was ${want}`);
    }
    assert.deepEqual(lost, [], 'lost writes');
    assert.ok(tally.last.size > USERS / 2, 'most users were written');

    const place = (await db.sql(`SELECT
        (SELECT count(*) FROM telegram_sessions)::int + (SELECT count(*) FROM telegram_sessions_duplicates_archive)::int AS total,
        (SELECT count(*) FROM telegram_sessions t JOIN telegram_sessions_duplicates_archive a USING (id))::int AS both,
        (SELECT count(*) FROM seeded s WHERE NOT EXISTS (SELECT 1 FROM telegram_sessions t WHERE t.id = s.id)
                                   AND NOT EXISTS (SELECT 1 FROM telegram_sessions_duplicates_archive a WHERE a.id = s.id))::int AS neither`)).rows[0];
    assert.deepEqual(place, { total: USERS * 3 + 2000 + tally.inserts, both: 0, neither: 0 });
  });
});

describe('tsm dedupe and a row the application holds', () => {
  it('waits at most a moment, redoes the batch skipping that row, moves the rest; the holder is never blocked for long', async () => {
    await db.sql(`${preFixSchema('held')}
      INSERT INTO held.telegram_sessions (tenant_id, user_id, session_string_enc, updated_at)
      SELECT 't', 'h-' || i, 'v' || j, timestamptz '2024-01-01' + j * interval '1 day' FROM generate_series(1, 50) i, generate_series(1, 2) j;`);
    const busy = (await db.sql(`SELECT id FROM held.telegram_sessions WHERE user_id = 'h-7' ORDER BY updated_at LIMIT 1`)).rows[0].id as string;
    const app = await db.client();
    await app.query('BEGIN');
    await app.query(`SELECT 1 FROM held.telegram_sessions WHERE id = $1 FOR UPDATE`, [busy]); // the application is writing that row
    let report: DedupeReport;
    try {
      const r = await runTsm(['dedupe', '-d', db.url, '--schema', 'held', '--json']);
      assert.equal(r.code, 1, r.stderr);
      report = r.json<DedupeReport>();
      // The application's transaction is still usable: nothing of tsm's waits on it now.
      const t0 = Date.now();
      await app.query(`UPDATE held.telegram_sessions SET session_string_enc = 'app', updated_at = now() WHERE id = $1`, [busy]);
      assert.ok(Date.now() - t0 < 1000);
    } finally {
      await app.query('COMMIT');
    }
    assert.equal(report.archived, 49, 'every other duplicate moved');
    assert.ok(report.batches_retried >= 1, 'the batch that met the busy row was redone skipping it');
    assert.ok(report.skipped_busy >= 1);
    assert.equal(report.duplicates_remaining, 1);
    assert.equal(report.verification?.ok, true);
    const again = await runTsm(['dedupe', '-d', db.url, '--schema', 'held', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const j = again.json<DedupeReport>();
    assert.equal(j.archived, 1);
    // The row the application wrote last is the newest now: it is the one kept.
    assert.deepEqual((await db.sql(`SELECT id::text, session_string_enc FROM held.telegram_sessions WHERE user_id = 'h-7'`)).rows, [{ id: busy, session_string_enc: 'app' }]);
  });
});

describe('the check after a pass finds every duplicate written meanwhile', () => {
  it('a new duplicate, a row added to a planned user_id, a planned row updated, a planned row held: all four counted exactly', async () => {
    await db.sql(`${preFixSchema('after')}
      INSERT INTO after.telegram_sessions (tenant_id, user_id, session_string_enc, updated_at)
      SELECT 't', 'p' || i, 'v' || j, timestamptz '2024-01-01' + j * interval '1 day' FROM generate_series(1, 20) i, generate_series(1, 2) j;
      INSERT INTO after.telegram_sessions (tenant_id, user_id, session_string_enc) SELECT 't', 'fresh' || g, 'x' FROM generate_series(1, 200) g;`);
    const older = async (user: string): Promise<string> =>
      (await db.sql(`SELECT id::text FROM after.telegram_sessions WHERE user_id = $1 ORDER BY updated_at LIMIT 1`, [user])).rows[0].id as string;
    const p2 = await older('p2');
    const p3 = await older('p3');
    const holder = await db.client();
    // The engine's connection, with the application's writes slipped in just before its first batch.
    const c = await db.client();
    let wrote = false;
    const spy = new Proxy(c, {
      get(target, prop, receiver) {
        if (prop === 'query') {
          return async (...args: unknown[]) => {
            if (!wrote && typeof args[0] === 'string' && args[0].includes('DELETE FROM')) {
              wrote = true;
              await db.sql(`INSERT INTO after.telegram_sessions (tenant_id, user_id, session_string_enc) VALUES ('t', 'fresh7', 'second');
                            INSERT INTO after.telegram_sessions (tenant_id, user_id, session_string_enc) VALUES ('t', 'p1', 'third');
                            UPDATE after.telegram_sessions SET session_string_enc = 'changed' WHERE id = '${p2}';`);
              await holder.query('BEGIN');
              await holder.query(`SELECT 1 FROM after.telegram_sessions WHERE id = $1 FOR UPDATE`, [p3]);
            }
            return (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    let report: DedupeReport;
    try {
      report = await dedupe(spy, { schema: 'after', keep: 'newest', dryRun: false, maxPasses: 1 });
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
    }
    assert.ok(wrote);
    const truth = (await db.sql(`SELECT count(*)::int AS users, coalesce(sum(n - 1), 0)::int AS excess
        FROM (SELECT count(*) AS n FROM after.telegram_sessions WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) d`)).rows[0];
    assert.deepEqual(truth, { users: 4, excess: 4 }, 'fresh7, p1, p2 and p3 each have two rows');
    assert.deepEqual({ users: report.after!.duplicate_users, excess: report.after!.excess_rows }, truth);
    assert.equal(report.after!.rows, (await db.sql(`SELECT count(*)::int AS n FROM after.telegram_sessions`)).rows[0].n);
    assert.equal(report.archived, 18);
    assert.equal(report.ok, false);
    const again = await dedupe(c, { schema: 'after', keep: 'newest', dryRun: false });
    assert.equal(again.ok, true);
    assert.equal(again.archived, 4);
  });
});
