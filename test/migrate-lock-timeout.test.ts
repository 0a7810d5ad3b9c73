/**
 * lock_timeout (issue 3): a long transaction holding a lock on the table. `up --lock-timeout
 * 200ms` retries with backoff, then fails clearly within its bound (naming the blocker) instead of
 * hanging; when the blocker commits in time it succeeds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { retryBoundMs } from '../src/migrate/retry.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, lastLine, migrate, seed, stderrWatcher } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);

async function columns(schema: string): Promise<string[]> {
  return (await db.sql(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'telegram_sessions'
     AND column_name IN ('auth_error', 'error_details') ORDER BY 1`, [schema])).rows.map((r) => r.column_name);
}

describe('tsm migrate up under a long transaction (lock_timeout)', () => {
  it('the blocker never commits: retries, then exit 1 within the bound, naming the blocker; 0003 not applied', async () => {
    await db.sql(preFixSchema('blocked'));
    await seed(db, 'blocked', 100);
    const blocker = await db.client();
    const pid = (await blocker.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    await blocker.query(`BEGIN; SELECT count(*) FROM blocked.telegram_sessions`); // ACCESS SHARE until COMMIT

    const started = Date.now();
    const r = await migrate(db.url, ['up', '--schema', 'blocked', '--lock-timeout', '200ms'], { timeoutMs: 60_000 });
    const elapsed = Date.now() - started;
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.ok(elapsed < retryBoundMs(200) + 8000, `failed after ${elapsed} ms (bound ${retryBoundMs(200)} ms + start-up and round trips)`);
    assert.ok(elapsed > 1000, 'it did retry');
    assert.equal(r.stderr.match(/0003_diagnostic_columns: no lock within 200ms; retrying in /g)?.length, 5, r.stderr);
    assert.match(
      lastLine(r.stderr),
      new RegExp(
        '^tsm: 0003_diagnostic_columns failed: canceling statement due to lock timeout \\(lock_timeout, SQLSTATE 55P03\\) — ' +
          `no lock within --lock-timeout 200ms in 6 attempts over [\\d.]+s; holding locks on the table: pid ${pid} \\(idle in transaction, transaction open \\d+ s, holds AccessShareLock\\); ` +
          'applied before it: 0001_create_table, 0002_widen_session_columns$',
      ),
    );
    assert.deepEqual(await columns('blocked'), [], 'the ALTER was rolled back');
    assert.deepEqual(await history(db, 'blocked'), SHIPPED.slice(0, 2));
    await blocker.query('ROLLBACK');
  });

  it('the blocker commits in time: the retry succeeds, everything applied', async () => {
    await db.sql(preFixSchema('later'));
    await seed(db, 'later', 100);
    const blocker = await db.client();
    await blocker.query(`BEGIN; SELECT count(*) FROM later.telegram_sessions`);
    const w = stderrWatcher();
    const run = migrate(db.url, ['up', '--schema', 'later', '--lock-timeout', '200ms', '--json'], { onSpawn: w.onSpawn, timeoutMs: 60_000 });
    await w.until((s) => /0003_diagnostic_columns: no lock within 200ms; retrying/.test(s));
    await blocker.query('COMMIT');
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    const step = r.json().steps.find((s: { name: string }) => s.name === '0003_diagnostic_columns');
    assert.ok(step.attempts >= 2, `attempts: ${step.attempts}`);
    assert.deepEqual(await columns('later'), ['auth_error', 'error_details']);
    assert.deepEqual(await history(db, 'later'), SHIPPED);
  });
});
