/**
 * The unique index migration (issue 3): duplicates stop `up` before anything is touched (the
 * count, `tsm dedupe`, rows byte-identical, no history table); once they are gone `up` completes;
 * an INVALID index left by a failed concurrent build is dropped and rebuilt valid; a build in
 * progress is never dropped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { doctor } from './helpers/doctor.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, catalogSnapshot, history, indexesOf, lastLine, migrate, rowsText, seed } from './helpers/migrate.js';
import { outcome, settle, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

describe('tsm migrate up: the unique index on user_id', () => {
  it('duplicates: exit 1 naming how many user_ids and tsm dedupe; rows byte-identical, nothing created', async () => {
    await db.sql(preFixSchema('dups'));
    await seed(db, 'dups', 1000, 3);
    const rows = await rowsText(db, 'dups');
    const catalog = await catalogSnapshot(db);
    const r = await migrate(db.url, ['up', '--schema', 'dups']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(
      lastLine(r.stderr),
      'tsm: 0004_user_id_unique_index: 3 user_ids have more than one row (6 rows in all; worst: "u-1" ×2, "u-2" ×2, "u-3" ×2): ' +
        'the unique index cannot be built; run `tsm dedupe --schema dups` (it archives the extra rows, nothing is deleted), ' +
        'then `tsm migrate up --schema dups` again; nothing was applied',
    );
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('tsm: ')).length, 1, 'one error line');
    assert.deepEqual(await rowsText(db, 'dups'), rows, 'rows byte-identical');
    assert.deepEqual(await catalogSnapshot(db), catalog, 'not even the history table or a column was created');

    // --json: the error document on stdout (docs/output.md), the same one line on stderr.
    const j = await migrate(db.url, ['up', '--schema', 'dups', '--json']);
    assert.equal(j.code, 1);
    const doc = j.json<{ ok: boolean; error: { code: string; message: string }; duplicates?: unknown }>();
    assert.equal(doc.error.message, lastLine(j.stderr).slice('tsm: '.length));
    assert.equal(doc.error.code, 'duplicates', 'a code a script can branch on (run tsm dedupe)');
    assert.deepEqual(doc.duplicates, { user_ids: 3, rows: 6 });
    assert.match(lastLine(j.stderr), /^tsm: 0004_user_id_unique_index: 3 user_ids have more than one row/);
  });

  it('after tsm dedupe removes the duplicates, up completes and doctor is all ok', async () => {
    const d = await runTsm(['dedupe', '--schema', 'dups', '-d', db.url, '--json']);
    assert.equal(d.code, 0, d.stderr);
    const r = await migrate(db.url, ['up', '--schema', 'dups', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await history(db, 'dups'), SHIPPED);
    const idx = (await indexesOf(db, 'dups')).find((i) => i.name === 'telegram_sessions_user_id_unique');
    assert.equal(idx?.valid, true);
    const doc = await doctor(db.url, ['--schema', 'dups']);
    assert.deepEqual(doc.report.checks.filter((c) => c.status !== 'ok').map((c) => c.id), []);
  });

  it('an INVALID index left by a failed concurrent build is dropped and rebuilt, and is valid', async () => {
    await db.sql(preFixSchema('inv'));
    await seed(db, 'inv', 300, 1);
    await assert.rejects(
      db.sql(`CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_user_id_unique ON inv.telegram_sessions (user_id) WHERE user_id IS NOT NULL`),
      (e: { code?: string }) => e.code === '23505',
    );
    const [left] = await indexesOf(db, 'inv').then((l) => l.filter((i) => i.name === 'telegram_sessions_user_id_unique'));
    assert.equal(left?.valid, false, 'the failed build left an INVALID index');
    await db.sql(`DELETE FROM inv.telegram_sessions WHERE user_id = 'u-1' AND session_string_enc LIKE repeat(md5('dup1'), 2) || '%'`);

    const dry = await migrate(db.url, ['up', '--dry-run', '--schema', 'inv']);
    assert.match(
      dry.stdout,
      /\nCOMMIT;\n-- telegram_sessions_user_id_unique is INVALID \(left by a failed concurrent build\): dropping it, then rebuilding\nSELECT pg_catalog\.pg_backend_pid\(\) AS pid; .*\nSET lock_timeout = '120000ms';\nDROP INDEX CONCURRENTLY IF EXISTS "inv"\."telegram_sessions_user_id_unique";\nSET lock_timeout = '500ms';\nSELECT pg_catalog\.pg_backend_pid\(\) AS pid; .*\nSET lock_timeout = '120000ms';\nCREATE UNIQUE INDEX CONCURRENTLY/,
    );

    const r = await migrate(db.url, ['up', '--schema', 'inv', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const step = r.json().steps.find((s: { name: string }) => s.name === '0004_user_id_unique_index');
    assert.deepEqual(step.notes, ['telegram_sessions_user_id_unique is INVALID (left by a failed concurrent build): dropping it, then rebuilding']);
    const now = (await indexesOf(db, 'inv')).filter((i) => i.name === 'telegram_sessions_user_id_unique');
    assert.equal(now.length, 1);
    assert.equal(now[0]!.valid, true);
    assert.notEqual(now[0]!.oid, left!.oid, 'a new index, not the leftover');
    const doc = await doctor(db.url, ['--schema', 'inv']);
    assert.equal(doc.check('index.invalid').status, 'ok');
  });

  it('an index of that name that is valid but cannot serve ON CONFLICT: refuses, names the reason', async () => {
    await db.sql(preFixSchema('odd'));
    await db.sql(`CREATE INDEX telegram_sessions_user_id_unique ON odd.telegram_sessions (user_id)`);
    const r = await migrate(db.url, ['up', '--schema', 'odd']);
    assert.equal(r.code, 1);
    assert.match(lastLine(r.stderr), /^tsm: 0004_user_id_unique_index: an index named telegram_sessions_user_id_unique exists but cannot serve ON CONFLICT \(user_id\) \(not unique\); rename or drop it/);
    assert.deepEqual(await history(db, 'odd'), []);
  });

  it('a build of that name still in progress is not dropped: refuses and names its pid', async () => {
    await db.sql(preFixSchema('busy'));
    await seed(db, 'busy', 100);
    // A concurrent build that waits for an open transaction is INVALID and in progress.
    const holder = await db.client();
    await holder.query(`BEGIN; UPDATE busy.telegram_sessions SET status = status WHERE user_id = 'u-1'`);
    const builder = await db.client();
    const pid = (await builder.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    const build = settle(builder.query(`CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_user_id_unique ON busy.telegram_sessions (user_id) WHERE user_id IS NOT NULL`));
    await waitFor('the other build in pg_stat_progress_create_index', async () =>
      (await db.sql(`SELECT count(*)::int AS n FROM pg_stat_progress_create_index WHERE pid = $1`, [pid])).rows[0].n === 1,
    );
    const r = await migrate(db.url, ['up', '--schema', 'busy']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(lastLine(r.stderr), new RegExp(`an index build of telegram_sessions_user_id_unique is in progress \\(pid ${pid}\\); wait for it to finish`));
    await holder.query('COMMIT');
    await outcome(build);
    const idx = (await indexesOf(db, 'busy')).find((i) => i.name === 'telegram_sessions_user_id_unique');
    assert.equal(idx?.valid, true, 'the other build completed undisturbed');
    const again = await migrate(db.url, ['up', '--schema', 'busy', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const step = again.json().steps.find((s: { name: string }) => s.name === '0004_user_id_unique_index');
    assert.match(step.notes[0], /telegram_sessions_user_id_unique is a valid unique index on \(user_id\) WHERE \(user_id IS NOT NULL\): nothing to build/);
  });
});
