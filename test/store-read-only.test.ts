/**
 * Read-only servers (issue 10). `tsm test-write` and `tsm bench` check first and exit 1 with the
 * design's one line, with no retries and nothing written (on main test-write spent 7.8 s retrying
 * on a hot standby). In the library `read_only` stays retryable (a failover) but bounded by the
 * retry policy and the save's deadline; after a promotion the same store saves again.
 * Both kinds: a hot standby made with pg_basebackup (harness), and a primary whose sessions
 * default to read-only (default_transaction_read_only on the role).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SessionStore, type SaveFailure } from '../src/index.js';
import { runTsm, startCostMs } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';
import { requirePart, startServer, startStandby } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));

const STANDBY_LINE = /^tsm: read-only server \(hot standby\): connect to the primary\n$/;

describe('a role whose sessions default to read-only', () => {
  it('test-write and bench: exit 1 at once with one line; nothing written', async () => {
    const role = await db.role('tsm_ro');
    await db.sql(`GRANT SELECT, INSERT, UPDATE, DELETE ON telegram_sessions TO "${role.name}"; ALTER ROLE "${role.name}" SET default_transaction_read_only = on`);
    for (const args of [['test-write'], ['bench', '--duration', '1']]) {
      const start = await startCostMs(); // this moment's cost of a tsm start, measured again for each run
      const t0 = performance.now();
      const r = await runTsm([...args, '-d', role.url]);
      const ms = performance.now() - t0;
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^tsm: read-only server \(default_transaction_read_only = on for this server, database or role\): connect to the primary, or use a role whose sessions can write\n$/);
      assert.ok(ms - start < 5000, `${args[0]} took ${Math.round(ms)} ms (a start that fails at once: ${Math.round(start)} ms)`);
    }
    const n = await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions`);
    assert.equal(n.rows[0].n, 0);
  });

  it('the library: read_only, retryable, after exactly retry.attempts attempts', async () => {
    const role = await db.role('tsm_ro_lib');
    await db.sql(`GRANT SELECT, INSERT, UPDATE ON telegram_sessions TO "${role.name}"; GRANT EXECUTE ON FUNCTION upsert_telegram_session(varchar, varchar, text, varchar, varchar, text, text) TO "${role.name}";
      ALTER ROLE "${role.name}" SET default_transaction_read_only = on`);
    const s = new SessionStore({ connectionString: role.url, metrics: false, retry: { attempts: 3, baseDelayMs: 10 } });
    try {
      const r = (await s.save({ tenantId: 't', userId: 'ro-1', sessionStringEnc: 'abc', keyId: 'k' })) as SaveFailure;
      assert.deepEqual([r.ok, r.code, r.sqlstate, r.retryable, r.attempts], [false, 'read_only', '25006', true, 3]);
    } finally {
      await s.close();
    }
  });
});

const skip = requirePart('postgres', 'pg_basebackup');

describe('a hot standby (pg_basebackup), then its promotion', { skip }, () => {
  it('test-write and bench refuse at once; the library retries within bounds, then saves after the failover', async () => {
    const primary = await startServer();
    await primary.sql('CREATE DATABASE app');
    await primary.sql(fixedSchema('public'), undefined, 'app');
    const standby = await startStandby(primary);
    await waitFor('the schema replicated to the standby', async () =>
      (await standby.sql(`SELECT to_regprocedure('upsert_telegram_session(varchar,varchar,text,varchar,varchar,text,text)') IS NOT NULL AS ok`, undefined, 'app')).rows[0].ok === true,
    );
    const url = standby.url('app') + '?sslmode=disable';

    for (const args of [['test-write'], ['bench', '--duration', '1']]) {
      const start = await startCostMs(); // this moment's cost of a tsm start, measured again for each run
      const t0 = performance.now();
      const r = await runTsm([...args, '-d', url]);
      const ms = performance.now() - t0;
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, STANDBY_LINE);
      assert.ok(ms - start < 5000, `${args[0]} took ${Math.round(ms)} ms (no retries; a start that fails at once: ${Math.round(start)} ms)`);
    }

    const s = new SessionStore({ connectionString: url, metrics: false, retry: { attempts: 4, baseDelayMs: 20, maxDelayMs: 50 }, saveTimeoutMs: 5000 });
    try {
      const t0 = performance.now();
      const r = (await s.save({ tenantId: 't', userId: 'failover-1', sessionStringEnc: 'abc', keyId: 'k' })) as SaveFailure;
      assert.deepEqual([r.ok, r.code, r.sqlstate, r.retryable, r.attempts], [false, 'read_only', '25006', true, 4]);
      assert.ok(performance.now() - t0 < 3000, 'bounded');
      await standby.promote();
      const after = await s.save({ tenantId: 't', userId: 'failover-1', sessionStringEnc: 'abc', keyId: 'k' });
      assert.ok(after.ok, JSON.stringify(after));
    } finally {
      await s.close();
    }
    const rows = await standby.sql(`SELECT count(*)::int AS n FROM telegram_sessions WHERE user_id = 'failover-1'`, undefined, 'app');
    assert.equal(rows.rows[0].n, 1);
  });
});
