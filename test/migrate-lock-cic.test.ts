/**
 * lock_timeout and CREATE INDEX CONCURRENTLY (issue 3, issue 10, DESIGN "Known traps"): the build
 * waits for transactions that write the table (and, last, for every older snapshot), and under
 * lock_timeout that wait fails and leaves an INVALID index, the build thrown away. A concurrent
 * build never makes writers wait, so it runs with its own, longer --index-lock-timeout (2 min by
 * default) and is not retried: a writer that commits within it lets the one build finish; one that
 * never commits makes `up` fail naming --index-lock-timeout and the INVALID leftover, which the next
 * `up` drops and rebuilds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, indexesOf, lastLine, migrate, seed } from './helpers/migrate.js';
import { sleep, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

/** The pre-fix table with the diagnostic columns already added: 0004 is the first to need a lock. */
async function setUp(schema: string): Promise<void> {
  await db.sql(preFixSchema(schema));
  await db.sql(`ALTER TABLE "${schema}".telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text`);
  await seed(db, schema, 200);
}

const uniqueIndex = async (schema: string) => (await indexesOf(db, schema)).filter((i) => i.name === 'telegram_sessions_user_id_unique');

describe('tsm migrate up: CREATE INDEX CONCURRENTLY under lock_timeout', () => {
  it('an open writing transaction: the build waits for it, once (no rebuild), and the index ends valid after the writer commits', async () => {
    await setUp('cic');
    const writer = await db.client();
    await writer.query(`BEGIN; UPDATE cic.telegram_sessions SET status = status WHERE user_id = 'u-1'`);
    const started = Date.now();
    const run = migrate(db.url, ['up', '--schema', 'cic', '--json'], { timeoutMs: 60_000 });
    await waitFor('the build waiting for the writer', async () => {
      const r = await db.sql(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm' AND wait_event_type = 'Lock' AND query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%'`);
      return r.rowCount === 1;
    }, { timeoutMs: 30_000 });
    await sleep(1500); // three times --lock-timeout: the build keeps waiting
    await writer.query('COMMIT');
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - started > 1500);
    const step = r.json().steps.find((s: { name: string }) => s.name === '0004_user_id_unique_index');
    assert.equal(step.attempts, 1, 'one build, not retried');
    assert.doesNotMatch(r.stderr, /0004_user_id_unique_index: no lock/);
    const idx = await uniqueIndex('cic');
    assert.equal(idx.length, 1);
    assert.equal(idx[0]!.valid, true);
    assert.deepEqual(await history(db, 'cic'), SHIPPED);
  });

  it('the writer never commits: exit 1 after --index-lock-timeout; the INVALID leftover is named, and the next up rebuilds it', async () => {
    await setUp('stuck');
    const writer = await db.client();
    await writer.query(`BEGIN; UPDATE stuck.telegram_sessions SET status = status WHERE user_id = 'u-1'`);
    const started = Date.now();
    const r = await migrate(db.url, ['up', '--schema', 'stuck', '--index-lock-timeout', '1s'], { timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.ok(Date.now() - started < 30_000);
    assert.doesNotMatch(r.stderr, /retrying/, 'a concurrent build that timed out is not retried');
    const line = lastLine(r.stderr);
    assert.match(line, /^tsm: 0004_user_id_unique_index failed: lock_timeout \(--index-lock-timeout 1s\): .*\(SQLSTATE 55P03\)/);
    assert.match(line, /applied before it: 0001_create_table, 0002_widen_session_columns, 0003_diagnostic_columns$/);
    const left = await uniqueIndex('stuck');
    if (left.length > 0) {
      // The leftover could not be dropped either (its drop waits for the same writer): it is named.
      assert.equal(left[0]!.valid, false);
      assert.match(line, /INVALID index left behind: telegram_sessions_user_id_unique \(the next `tsm migrate up --schema stuck` drops and rebuilds it\)/);
    }
    assert.deepEqual(await history(db, 'stuck'), SHIPPED.slice(0, 3));
    await writer.query('COMMIT');
    const again = await migrate(db.url, ['up', '--schema', 'stuck']);
    assert.equal(again.code, 0, again.stderr);
    const idx = await uniqueIndex('stuck');
    assert.equal(idx.length, 1);
    assert.equal(idx[0]!.valid, true);
  });
});
