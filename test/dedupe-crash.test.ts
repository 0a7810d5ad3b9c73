/**
 * tsm dedupe killed with SIGKILL in the middle of a run, then run again (issue 5): no row is lost
 * or doubled. Small batches over many duplicated user_ids make the run long enough to be killed
 * while the archive is filling up; the test fails when the kill did not land mid-run.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

const USERS = 3000;

async function one<T = Record<string, unknown>>(sql: string): Promise<T> {
  return (await db.sql(sql)).rows[0] as T;
}

/** Where every original row is now. */
async function places(): Promise<{ table: number; archive: number; both: number; neither: number; doubled: number; changed: number }> {
  return one(`SELECT
      (SELECT count(*) FROM telegram_sessions)::int AS table,
      (SELECT count(*) FROM telegram_sessions_duplicates_archive)::int AS archive,
      (SELECT count(*) FROM telegram_sessions t JOIN telegram_sessions_duplicates_archive a USING (id))::int AS both,
      (SELECT count(*) FROM orig o WHERE NOT EXISTS (SELECT 1 FROM telegram_sessions t WHERE t.id = o.id)
                                 AND NOT EXISTS (SELECT 1 FROM telegram_sessions_duplicates_archive a WHERE a.id = o.id))::int AS neither,
      (SELECT count(*) FROM (SELECT id FROM telegram_sessions_duplicates_archive GROUP BY id HAVING count(*) > 1) d)::int AS doubled,
      (SELECT count(*) FROM orig o JOIN telegram_sessions_duplicates_archive a USING (id)
        WHERE (o.user_id, o.session_string_enc, o.updated_at) IS DISTINCT FROM (a.user_id, a.session_string_enc, a.updated_at))::int AS changed`);
}

describe('tsm dedupe: kill -9 mid-run, then run again', () => {
  it('no row lost or doubled', async (t) => {
    await db.sql(`${preFixSchema('public')}
      INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc, key_id, updated_at)
      SELECT 't', 'd-' || i, md5(i || '/' || j), 'k', timestamptz '2024-01-01' + j * interval '1 hour'
        FROM generate_series(1, ${USERS}) i, generate_series(1, 2 + i % 2) j;
      CREATE TABLE orig AS SELECT * FROM telegram_sessions;`);
    const total = (await one<{ n: number }>(`SELECT count(*)::int AS n FROM orig`)).n;

    let child: ChildProcess | undefined;
    const killed = runTsm(['dedupe', '-d', db.url, '--batch-size', '1', '--json'], { onSpawn: (c) => (child = c) });
    // Poll the archive (created by dedupe) and kill once it is filling up.
    let seen = 0;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const r = await one(`SELECT to_regclass('public.telegram_sessions_duplicates_archive') IS NOT NULL AS exists`);
      if (r.exists) {
        seen = (await one<{ n: number }>(`SELECT count(*)::int AS n FROM telegram_sessions_duplicates_archive`)).n;
        if (seen >= 200) break;
      }
      await new Promise((res) => setTimeout(res, 10));
    }
    child!.kill('SIGKILL');
    const k = await killed;
    assert.equal(k.signal, 'SIGKILL', `dedupe finished before it could be killed (exit ${k.code}): make the run longer`);

    // The server notices the dead client and rolls back its open transaction, if any.
    await waitFor("the killed dedupe's backends gone", async () =>
      (await one(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm'`)).n === 0,
    );
    const mid = await places();
    const remaining = (await one<{ n: number }>(`SELECT count(*)::int AS n FROM (SELECT 1 FROM telegram_sessions GROUP BY user_id HAVING count(*) > 1) d`)).n;
    t.diagnostic(`killed with ${mid.archive} rows archived (${seen} seen before the kill), ${remaining} user_ids still duplicated`);
    assert.ok(mid.archive > 0 && remaining > 0, 'the kill landed mid-run');
    assert.deepEqual({ ...mid, table: mid.table + mid.archive }, { table: total, archive: mid.archive, both: 0, neither: 0, doubled: 0, changed: 0 });

    const rerun = await runTsm(['dedupe', '-d', db.url, '--json']);
    assert.equal(rerun.code, 0, rerun.stderr);
    const j = rerun.json();
    const excess = USERS * 2 + Math.ceil(USERS / 2) - USERS; // 2 or 3 rows per user, one kept each
    assert.equal(j.archived, excess - mid.archive, 'the rerun moves exactly what the killed run left');
    assert.equal(j.conservation.holds, true);
    assert.equal(j.verification.ok, true);
    assert.equal(j.before.archive_rows, mid.archive, 'the rerun starts from what the killed run committed');

    const end = await places();
    assert.deepEqual(end, { table: total - excess, archive: excess, both: 0, neither: 0, doubled: 0, changed: 0 });
    assert.equal((await one(`SELECT count(DISTINCT user_id)::int AS n FROM telegram_sessions`)).n, USERS);
  });
});
