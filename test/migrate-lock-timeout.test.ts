/**
 * lock_timeout (issue 3, issue 10): a long transaction holding a lock on the table. `up
 * --lock-timeout 200ms --lock-retries 5` retries with backoff, then fails clearly within its bound
 * (naming the timeout and the blocker, from this database only) instead of hanging; when the
 * blocker commits in time it succeeds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { retryBoundMs } from '../src/migrate/lock.js';
import { asAdmin, createTestDatabase, urlFor } from './helpers/db.js';
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
    const r = await migrate(db.url, ['up', '--schema', 'blocked', '--lock-timeout', '200ms', '--lock-retries', '5'], { timeoutMs: 60_000 });
    const elapsed = Date.now() - started;
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.ok(elapsed < retryBoundMs(200, 5) + 8000, `failed after ${elapsed} ms (bound ${retryBoundMs(200, 5)} ms + start-up and round trips)`);
    assert.ok(elapsed > 1000, 'it did retry');
    assert.equal(r.stderr.match(/0003_diagnostic_columns: no lock within 200ms; retrying in /g)?.length, 5, r.stderr);
    assert.match(
      lastLine(r.stderr),
      new RegExp(
        '^tsm: 0003_diagnostic_columns failed: lock_timeout \\(--lock-timeout 200ms\\) in all 6 attempts over [\\d.]+s: [^;]+ \\(SQLSTATE 55P03\\); ' +
          `holding locks on the table: pid ${pid} \\(idle in transaction, transaction open \\d+ s, holds AccessShareLock\\); ` +
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
    const run = migrate(db.url, ['up', '--schema', 'later', '--lock-timeout', '200ms', '--lock-retries', '5', '--json'], { onSpawn: w.onSpawn, timeoutMs: 60_000 });
    await w.until((s) => /0003_diagnostic_columns: no lock within 200ms; retrying/.test(s));
    await blocker.query('COMMIT');
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    const step = r.json().steps.find((s: { name: string }) => s.name === '0003_diagnostic_columns');
    assert.ok(step.attempts >= 2, `attempts: ${step.attempts}`);
    assert.deepEqual(await columns('later'), ['auth_error', 'error_details']);
    assert.deepEqual(await history(db, 'later'), SHIPPED);
  });

  it('blockers are named from this database only (a session of another database holding the same relation oid is not one)', async () => {
    // CREATE DATABASE … TEMPLATE copies relations with their oids: the twin's table has our table's oid.
    const base = `${db.name.slice(0, 50)}_tw`;
    const twin = `${db.name.slice(0, 50)}_t2`;
    await asAdmin((c) => c.query(`CREATE DATABASE "${base}"`));
    try {
      const setup = new pg.Client({ connectionString: urlFor(base) });
      await setup.connect();
      await setup.query(preFixSchema('public'));
      await setup.end();
      await asAdmin((c) => c.query(`CREATE DATABASE "${twin}" TEMPLATE "${base}"`));
      const here = new pg.Client({ connectionString: urlFor(base) });
      const there = new pg.Client({ connectionString: urlFor(twin) });
      for (const c of [here, there]) {
        c.on('error', () => {});
        await c.connect();
      }
      try {
        const oid = async (c: pg.Client): Promise<number> => (await c.query(`SELECT 'public.telegram_sessions'::regclass::oid::int AS o`)).rows[0].o;
        assert.equal(await oid(here), await oid(there), 'the same relation oid in both databases');
        const herePid = (await here.query('SELECT pg_backend_pid() AS p')).rows[0].p;
        const therePid = (await there.query('SELECT pg_backend_pid() AS p')).rows[0].p;
        await here.query('BEGIN; LOCK TABLE public.telegram_sessions IN ACCESS SHARE MODE');
        await there.query('BEGIN; LOCK TABLE public.telegram_sessions IN ACCESS SHARE MODE');
        const r = await migrate(urlFor(base), ['up', '--lock-timeout', '100ms', '--lock-retries', '1']);
        assert.equal(r.code, 1, r.stderr);
        const line = lastLine(r.stderr);
        assert.match(line, new RegExp(`holding locks on the table: pid ${herePid} \\(`));
        assert.doesNotMatch(line, new RegExp(`pid ${therePid}\\b`), 'the session of the other database is not named');
      } finally {
        await here.end().catch(() => {});
        await there.end().catch(() => {});
      }
    } finally {
      await asAdmin(async (c) => {
        await c.query(`DROP DATABASE IF EXISTS "${twin}" WITH (FORCE)`);
        await c.query(`DROP DATABASE IF EXISTS "${base}" WITH (FORCE)`);
      });
    }
  });
});
