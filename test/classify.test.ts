/** classifyError on errors provoked for real in PostgreSQL (no hand-built error objects). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { classifyError, type ErrorCode } from '../src/db/classify.js';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { asAdmin, createTestDatabase } from './helpers/db.js';
import { rejection, settle, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

/** The error of a statement that must fail; handlers are attached at once (see helpers/wait.ts). */
function failureOf(p: Promise<unknown>): Promise<unknown> {
  return rejection(settle(p), 'the statement');
}

async function expectCode(p: Promise<unknown>, code: ErrorCode, sqlstate: string, retryable: boolean): Promise<void> {
  const c = classifyError(await failureOf(p));
  assert.deepEqual({ code: c.code, sqlstate: c.sqlstate, retryable: c.retryable }, { code, sqlstate, retryable });
}

await db.sql(`
    CREATE TABLE tenants (id text PRIMARY KEY);
    CREATE TABLE t (id int PRIMARY KEY, tenant text REFERENCES tenants(id), user_id varchar(255) NOT NULL, s varchar(10));
    INSERT INTO tenants VALUES ('a');
    INSERT INTO t VALUES (1, 'a', 'u1', 'x');`);

describe('classifyError by SQLSTATE', () => {
  it('22001 → session_too_long', () => expectCode(db.sql(`INSERT INTO t VALUES (2,'a','u2',repeat('x',11))`), 'session_too_long', '22001', false));
  it('42703 → missing_column', () => expectCode(db.sql('SELECT auth_error FROM t'), 'missing_column', '42703', false));
  it('42P10 → missing_unique_index', () =>
    expectCode(db.sql(`INSERT INTO t VALUES (3,'a','u3','x') ON CONFLICT (s) DO NOTHING`), 'missing_unique_index', '42P10', false));
  it('42883 → missing_upsert_function', () =>
    expectCode(db.sql(`SELECT upsert_telegram_session('a','b','c','d')`), 'missing_upsert_function', '42883', false));
  it('23505 → duplicate_session', () => expectCode(db.sql(`INSERT INTO t VALUES (1,'a','u9','x')`), 'duplicate_session', '23505', false));
  it('23503 → invalid_tenant_or_user', () =>
    expectCode(db.sql(`INSERT INTO t VALUES (4,'nope','u4','x')`), 'invalid_tenant_or_user', '23503', false));
  it('23502 → missing_required_field', () =>
    expectCode(db.sql(`INSERT INTO t VALUES (5,'a',NULL,'x')`), 'missing_required_field', '23502', false));
  it('TSM01 → tenant_mismatch', () =>
    expectCode(db.sql(`DO $$ BEGIN RAISE EXCEPTION 'other tenant' USING ERRCODE = 'TSM01'; END $$`), 'tenant_mismatch', 'TSM01', false));
  it('22012 → database_error (anything else)', () => expectCode(db.sql('SELECT 1/0'), 'database_error', '22012', false));

  it('42501 → permission_denied', async () => {
    const role = await db.role('tsm_noperm');
    const c = await db.client();
    await c.query(`SET ROLE "${role.name}"`);
    await expectCode(c.query('SELECT * FROM t'), 'permission_denied', '42501', false);
    await c.query('RESET ROLE');
  });

  it('25006 → read_only (retryable)', async () => {
    const c = await db.client();
    await c.query('SET default_transaction_read_only = on');
    await expectCode(c.query(`INSERT INTO t VALUES (6,'a','u6','x')`), 'read_only', '25006', true);
  });

  it('55P03 → lock_timeout (retryable)', async () => {
    const holder = await db.client();
    const waiter = await db.client();
    await holder.query('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
    await waiter.query(`SET lock_timeout = '50ms'`);
    await expectCode(waiter.query('SELECT * FROM t'), 'lock_timeout', '55P03', true);
    await holder.query('ROLLBACK');
  });

  it('57014 → statement_timeout (retryable)', async () => {
    const c = await db.client();
    await c.query(`SET statement_timeout = '50ms'`);
    await expectCode(c.query('SELECT pg_sleep(2)'), 'statement_timeout', '57014', true);
  });

  it('40001 → serialization_failure (retryable)', async () => {
    const a = await db.client();
    const b = await db.client();
    await a.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await a.query('SELECT * FROM t WHERE id = 1');
    await b.query(`UPDATE t SET s = 'y' WHERE id = 1`);
    await expectCode(a.query(`UPDATE t SET s = 'z' WHERE id = 1`), 'serialization_failure', '40001', true);
    await a.query('ROLLBACK');
  });

  it('40P01 → serialization_failure (deadlock, retryable)', async () => {
    await db.sql(`INSERT INTO t VALUES (10,'a','u10','x'), (11,'a','u11','x') ON CONFLICT DO NOTHING`);
    const a = await db.client();
    const b = await db.client();
    await a.query(`SET deadlock_timeout = '50ms'`);
    await b.query(`SET deadlock_timeout = '50ms'`);
    await a.query('BEGIN');
    await b.query('BEGIN');
    await a.query('UPDATE t SET s = 1 WHERE id = 10');
    await b.query('UPDATE t SET s = 1 WHERE id = 11');
    const pa = a.query('UPDATE t SET s = 2 WHERE id = 11').then(() => null, (e: unknown) => e);
    const pb = b.query('UPDATE t SET s = 2 WHERE id = 10').then(() => null, (e: unknown) => e);
    const errs = (await Promise.all([pa, pb])).filter((e) => e !== null);
    await a.query('ROLLBACK');
    await b.query('ROLLBACK');
    assert.equal(errs.length, 1, 'exactly one side is chosen as the deadlock victim');
    const c = classifyError(errs[0]);
    assert.deepEqual([c.code, c.sqlstate, c.retryable], ['serialization_failure', '40P01', true]);
  });

  it('53300 → too_many_connections (retryable)', async () => {
    const role = await db.role('tsm_onecon');
    await asAdmin((c) => c.query(`ALTER ROLE "${role.name}" CONNECTION LIMIT 1`));
    const first = new pg.Client({ connectionString: role.url });
    await first.connect();
    const second = new pg.Client({ connectionString: role.url });
    second.on('error', () => {});
    await expectCode(second.connect(), 'too_many_connections', '53300', true);
    await first.end();
  });

  it('57P01 → connection_error (terminated backend, retryable)', async () => {
    const victim = new pg.Client({ connectionString: db.url });
    victim.on('error', () => {});
    await victim.connect();
    const pid = (await victim.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    // Handlers attached now: the query fails as soon as the backend is terminated, which may be
    // before pg_terminate_backend's own result arrives here.
    const p = settle(victim.query('SELECT pg_sleep(5)'));
    await waitFor('the victim sleeping in pg_sleep', async () =>
      (await db.sql(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'`, [pid])).rowCount === 1,
    );
    assert.equal((await db.sql('SELECT pg_terminate_backend($1) AS ok', [pid])).rows[0].ok, true);
    const c = classifyError(await rejection(p, 'the terminated query'));
    assert.deepEqual({ code: c.code, sqlstate: c.sqlstate, retryable: c.retryable }, { code: 'connection_error', sqlstate: '57P01', retryable: true });
    await victim.end().catch(() => {});
  });
});

describe('classifyError on socket errors', () => {
  it('a closed port → connection_error (ECONNREFUSED, retryable)', async () => {
    const port = await freePort();
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'x', database: 'x' });
    c.on('error', () => {});
    await expectCode(c.connect(), 'connection_error', 'ECONNREFUSED', true);
  });

  it('a non-error value → database_error, not a crash', () => {
    assert.equal(classifyError('boom').code, 'database_error');
    assert.equal(classifyError(undefined).code, 'database_error');
  });
});
