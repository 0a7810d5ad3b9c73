/**
 * tsm migrate down (issue 3): all the way back from an empty start, and refusing where reversing
 * would drop data (a table with rows, a diagnostic column holding a value), with a clear message,
 * after reverting what it could.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, indexesOf, lastLine, migrate, seed } from './helpers/migrate.js';
import { outcome, settle, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

async function exists(sql: string, values: unknown[]): Promise<boolean> {
  return (await db.sql(`SELECT (${sql}) IS NOT NULL AS ok`, values)).rows[0].ok;
}

describe('tsm migrate down', () => {
  it('down without N reverts the last one (0006 puts 0005\'s function back); down 5 the rest, in reverse order: nothing of the schema is left', async () => {
    assert.equal((await migrate(db.url, ['up', '--schema', 'empty'])).code, 0);
    const one = await migrate(db.url, ['down', '--schema', 'empty', '--json']);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(one.json().steps.map((s: { name: string }) => s.name), ['0006_harden_upsert_function']);
    assert.deepEqual(await history(db, 'empty'), SHIPPED.slice(0, 5));
    // 0006's down never leaves the application without its function: 0005's body is back.
    const fn = (await db.sql(`SELECT proconfig, prosecdef FROM pg_proc WHERE oid = to_regprocedure('empty.upsert_telegram_session(varchar,varchar,text,varchar,varchar,text,text)')`)).rows;
    assert.deepEqual(fn, [{ proconfig: null, prosecdef: false }], "0005's function, without 0006's SET search_path");
    assert.equal(await exists(`to_regprocedure('empty.upsert_telegram_session(varchar,bigint,text,varchar,varchar,text,text)')`, []), false, 'the bigint overload is gone');

    const rest = await migrate(db.url, ['down', '5', '--schema', 'empty']);
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stdout, /reverted {2}0005_upsert_function[\s\S]*reverted {2}0004_user_id_unique_index[\s\S]*reverted {2}0001_create_table[\s\S]*ok: 5 migrations reverted, 0 still applied/);
    assert.equal(await exists(`to_regprocedure('empty.upsert_telegram_session(varchar,varchar,text,varchar,varchar,text,text)')`, []), false);
    assert.match(rest.stdout, /session columns stay text: narrowing them could truncate stored sessions/);
    assert.deepEqual(await history(db, 'empty'), []);
    assert.equal(await exists(`to_regclass('empty.telegram_sessions')`, []), false, 'the empty table is dropped');

    const nothing = await migrate(db.url, ['down', '--schema', 'empty']);
    assert.equal(nothing.code, 0);
    assert.match(nothing.stdout, /ok: nothing to revert, no migration applied/);
    const st = await migrate(db.url, ['status', '--schema', 'empty', '--json']);
    assert.equal(st.code, 1);
    assert.deepEqual(st.json().migrations.map((m: { state: string }) => m.state), SHIPPED.map(() => 'pending'));
    // And up again from there.
    assert.equal((await migrate(db.url, ['up', '--schema', 'empty'])).code, 0);
    assert.deepEqual(await history(db, 'empty'), SHIPPED);
  });

  it('a table with rows: 0006…0002 reverted, then 0001 refuses to drop the table, exit 1; rows intact', async () => {
    await db.sql(preFixSchema('rows'));
    await seed(db, 'rows', 8);
    assert.equal((await migrate(db.url, ['up', '--schema', 'rows'])).code, 0);
    const cols8 = `SELECT id, tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at FROM rows.telegram_sessions ORDER BY id`;
    const rowsBefore = (await db.sql(cols8)).rows;
    const r = await migrate(db.url, ['down', '6', '--schema', 'rows']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(
      lastLine(r.stderr),
      'tsm: 0001_create_table (down) failed: refusing to drop rows.telegram_sessions: it holds 8 rows; dropping it would lose them; ' +
        'reverted before it: 0006_harden_upsert_function, 0005_upsert_function, 0004_user_id_unique_index, 0003_diagnostic_columns, 0002_widen_session_columns',
    );
    assert.deepEqual(await history(db, 'rows'), ['0001_create_table']);
    assert.equal(await exists(`to_regclass('rows.telegram_sessions')`, []), true);
    assert.deepEqual((await indexesOf(db, 'rows')).map((i) => i.name), ['telegram_sessions_pkey'], 'the unique index was dropped');
    // 0003's columns were empty (never written), so they went; the rows are otherwise the same.
    const cols = (await db.sql(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'rows' AND table_name = 'telegram_sessions' ORDER BY ordinal_position`)).rows.map((c) => c.column_name);
    assert.deepEqual(cols, ['id', 'tenant_id', 'user_id', 'session_string_enc', 'key_id', 'status', 'created_at', 'updated_at']);
    assert.deepEqual((await db.sql(cols8)).rows, rowsBefore, 'same rows');
  });

  it('a diagnostic column holding a value: 0003 refuses, the columns and their values stay', async () => {
    await db.sql(preFixSchema('diag'));
    await seed(db, 'diag', 5);
    assert.equal((await migrate(db.url, ['up', '--schema', 'diag'])).code, 0);
    await db.sql(`UPDATE diag.telegram_sessions SET auth_error = 'session_too_long' WHERE user_id = 'u-2'`);
    const r = await migrate(db.url, ['down', '4', '--schema', 'diag']);
    assert.equal(r.code, 1);
    assert.equal(
      lastLine(r.stderr),
      'tsm: 0003_diagnostic_columns (down) failed: refusing to drop auth_error, error_details: 1 row of diag.telegram_sessions holds a value there; ' +
        'dropping would lose it; reverted before it: 0006_harden_upsert_function, 0005_upsert_function, 0004_user_id_unique_index',
    );
    const v = (await db.sql(`SELECT auth_error FROM diag.telegram_sessions WHERE user_id = 'u-2'`)).rows[0].auth_error;
    assert.equal(v, 'session_too_long');
    assert.deepEqual(await history(db, 'diag'), SHIPPED.slice(0, 3));
    // up puts back what down removed.
    assert.equal((await migrate(db.url, ['up', '--schema', 'diag'])).code, 0);
    assert.deepEqual(await history(db, 'diag'), SHIPPED);
  });

  it('the in-transaction guard: a row committed between the check and the drop still stops the drop', async () => {
    assert.equal((await migrate(db.url, ['up', '--schema', 'guard'])).code, 0);
    assert.equal((await migrate(db.url, ['down', '5', '--schema', 'guard'])).code, 0);
    // An insert still in flight: down's count sees no row, then its LOCK TABLE waits for the insert.
    const writer = await db.client();
    await writer.query(`BEGIN; INSERT INTO guard.telegram_sessions (tenant_id, user_id) VALUES ('t-1', 'late')`);
    const run = settle(migrate(db.url, ['down', '--schema', 'guard', '--lock-timeout', '10s']));
    await waitFor("down's LOCK TABLE waiting behind the insert", async () =>
      (await db.sql(`SELECT count(*)::int AS n FROM pg_locks WHERE relation = to_regclass('guard.telegram_sessions')
         AND mode = 'AccessExclusiveLock' AND NOT granted`)).rows[0].n > 0,
    );
    await writer.query('COMMIT');
    const r = await outcome(run);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(lastLine(r.stderr), /^tsm: 0001_create_table \(down\) failed: refusing to drop guard\.telegram_sessions: rows arrived while migrating down; dropping it would lose them; nothing was reverted$/);
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM guard.telegram_sessions`)).rows[0].n, 1, 'the late row is there');
    assert.deepEqual(await history(db, 'guard'), ['0001_create_table']);
  });
});
