/**
 * Every code of the design's error table, provoked for real in PostgreSQL through
 * SessionStore.save() (both write paths where they differ): what an application gets back.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { ErrorCode } from '../src/db/classify.js';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { SessionStore, type SaveFailure, type SaveResult, type SessionStoreOptions } from '../src/index.js';
import { asAdmin, createTestDatabase } from './helpers/db.js';
import { fixedSchema, preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

await db.sql(`
  ${fixedSchema('public')}
  ${preFixSchema('prefix')}
  ${fixedSchema('short')}
  ALTER TABLE short.telegram_sessions ALTER COLUMN session_string_enc TYPE varchar(255);
  ${fixedSchema('dup')}
  CREATE UNIQUE INDEX dup_key_unique ON dup.telegram_sessions (key_id);
  ${fixedSchema('fk')}
  CREATE TABLE fk.tenants (id varchar(255) PRIMARY KEY);
  INSERT INTO fk.tenants VALUES ('acme');
  ALTER TABLE fk.telegram_sessions ADD FOREIGN KEY (tenant_id) REFERENCES fk.tenants (id);
  ${fixedSchema('nn')}
  ALTER TABLE nn.telegram_sessions ADD COLUMN phone text NOT NULL;
  ${fixedSchema('chk')}
  ALTER TABLE chk.telegram_sessions ADD CHECK (status IN ('pending', 'authorized'));
  ${fixedSchema('perm')}
`);

const stores: SessionStore[] = [];
after(() => Promise.all(stores.map((s) => s.close())));

/** A store on this database (or `url`), retrying fast. */
function store(o: Partial<SessionStoreOptions> & { url?: string } = {}): SessionStore {
  const { url, ...rest } = o;
  const s = new SessionStore({ connectionString: url ?? db.url, retry: { attempts: 3, baseDelayMs: 5 }, metrics: false, ...rest });
  stores.push(s);
  return s;
}

let n = 0;
const input = (extra: Record<string, unknown> = {}) => ({
  tenantId: 'acme',
  userId: `codes-${++n}`,
  sessionStringEnc: 'A'.repeat(800),
  keyId: 'k1',
  status: 'authorized',
  ...extra,
});

function expectFailure(r: SaveResult, code: ErrorCode, sqlstate: string | null, retryable: boolean, attempts: number): SaveFailure {
  assert.equal(r.ok, false, `expected ${code}, got ${JSON.stringify(r)}`);
  const f = r as SaveFailure;
  assert.deepEqual(
    { code: f.code, sqlstate: f.sqlstate, retryable: f.retryable, attempts: f.attempts },
    { code, sqlstate, retryable, attempts },
    f.details,
  );
  assert.equal(typeof f.details, 'string');
  assert.ok(!f.details.includes('AAAAAAAA'), 'the session string is not in the details');
  return f;
}

/** Waits until a backend with this application_name waits on a lock. */
async function waitForLockWait(app: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [app]);
    if (r.rows[0].n > 0) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  assert.fail(`no backend of ${app} ever waited on a lock`);
}

describe('SessionStore.save(): every classified code, for real', () => {
  it('session_too_long (22001): varchar(255) column, both paths; 255 characters still fit', async () => {
    for (const via of ['function', 'statement'] as const) {
      const s = store({ schema: 'short', via });
      expectFailure(await s.save(input({ sessionStringEnc: 'A'.repeat(256) })), 'session_too_long', '22001', false, 1);
      assert.equal((await s.save(input({ sessionStringEnc: 'A'.repeat(255) }))).ok, true);
    }
  });

  it('missing_column (42703): the statement writes auth_error, which the pre-fix table lacks', async () => {
    const s = store({ schema: 'prefix', via: 'statement' });
    expectFailure(await s.save(input({ authError: 'flood_wait' })), 'missing_column', '42703', false, 1);
  });

  it('missing_unique_index (42P10): the incident itself, ON CONFLICT without a unique index', async () => {
    const s = store({ schema: 'prefix', via: 'statement' });
    const f = expectFailure(await s.save(input()), 'missing_unique_index', '42P10', false, 1);
    assert.match(f.details, /ON CONFLICT/);
  });

  it('missing_upsert_function (42883): no upsert_telegram_session in the schema', async () => {
    const s = store({ schema: 'prefix', via: 'function' });
    expectFailure(await s.save(input()), 'missing_upsert_function', '42883', false, 1);
  });

  it('duplicate_session (23505): another unique index (key_id) rejects the insert', async () => {
    for (const via of ['function', 'statement'] as const) {
      const s = store({ schema: 'dup', via });
      assert.equal((await s.save(input({ keyId: `shared-${via}` }))).ok, true);
      expectFailure(await s.save(input({ keyId: `shared-${via}` })), 'duplicate_session', '23505', false, 1);
    }
  });

  it('invalid_tenant_or_user (23503): a foreign key on tenant_id', async () => {
    const s = store({ schema: 'fk' });
    assert.equal((await s.save(input({ tenantId: 'acme' }))).ok, true);
    expectFailure(await s.save(input({ tenantId: 'nobody' })), 'invalid_tenant_or_user', '23503', false, 1);
  });

  it('missing_required_field (23502): a NOT NULL column the upsert does not fill', async () => {
    for (const via of ['function', 'statement'] as const) {
      expectFailure(await store({ schema: 'nn', via }).save(input()), 'missing_required_field', '23502', false, 1);
    }
  });

  it('tenant_mismatch (TSM01): a user id of another tenant is neither moved nor overwritten, both paths', async () => {
    for (const via of ['function', 'statement'] as const) {
      const s = store({ via });
      const mine = input({ tenantId: 'tenant-a', keyId: 'ka' });
      const first = await s.save(mine);
      assert.equal(first.ok, true);
      const f = expectFailure(await s.save({ ...mine, tenantId: 'tenant-b', keyId: 'kb' }), 'tenant_mismatch', 'TSM01', false, 1);
      assert.match(f.details, /another tenant/);
      const rows = await db.sql('SELECT tenant_id, key_id FROM telegram_sessions WHERE user_id = $1', [mine.userId]);
      assert.deepEqual(rows.rows, [{ tenant_id: 'tenant-a', key_id: 'ka' }], `${via}: the row stayed where it was`);
    }
  });

  it('permission_denied (42501): a role without table privileges; without EXECUTE on the function', async () => {
    const role = await db.role('tsm_sp_noperm');
    await db.sql(`GRANT USAGE ON SCHEMA perm TO "${role.name}"`);
    expectFailure(await store({ url: role.url, schema: 'perm', via: 'statement' }).save(input()), 'permission_denied', '42501', false, 1);
    // PostgreSQL grants EXECUTE to PUBLIC: revoke it to restrict the function.
    await db.sql(`REVOKE EXECUTE ON FUNCTION perm.upsert_telegram_session(varchar, varchar, text, varchar, varchar, text, text) FROM PUBLIC`);
    expectFailure(await store({ url: role.url, schema: 'perm', via: 'function' }).save(input()), 'permission_denied', '42501', false, 1);
  });

  it('read_only (25006, retryable): a role with default_transaction_read_only, every attempt used', async () => {
    const role = await db.role('tsm_sp_ro');
    await db.sql(`GRANT SELECT, INSERT, UPDATE ON telegram_sessions TO "${role.name}"`);
    await asAdmin((c) => c.query(`ALTER ROLE "${role.name}" SET default_transaction_read_only = on`));
    expectFailure(await store({ url: role.url }).save(input()), 'read_only', '25006', true, 3);
  });

  it('lock_timeout (55P03, retryable): the table is locked longer than every attempt waits', async () => {
    const holder = await db.client();
    await holder.query('BEGIN; LOCK TABLE telegram_sessions IN ACCESS EXCLUSIVE MODE');
    try {
      const s = store({ poolConfig: { options: '-c lock_timeout=50' }, retry: { attempts: 2, baseDelayMs: 5 } });
      expectFailure(await s.save(input()), 'lock_timeout', '55P03', true, 2);
    } finally {
      await holder.query('ROLLBACK');
    }
  });

  it('statement_timeout (57014, retryable): the upsert runs past statement_timeout', async () => {
    const holder = await db.client();
    await holder.query('BEGIN; LOCK TABLE telegram_sessions IN ACCESS EXCLUSIVE MODE');
    try {
      const s = store({ poolConfig: { options: '-c statement_timeout=50' }, retry: { attempts: 2, baseDelayMs: 5 } });
      expectFailure(await s.save(input()), 'statement_timeout', '57014', true, 2);
    } finally {
      await holder.query('ROLLBACK');
    }
  });

  it('serialization_failure (40001, retryable): REPEATABLE READ upsert of a row another transaction updated', async () => {
    const mine = input();
    assert.equal((await store().save(mine)).ok, true);
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query(`UPDATE telegram_sessions SET status = 'pending' WHERE user_id = $1`, [mine.userId]);
    const s = store({
      poolConfig: { options: '-c default_transaction_isolation=repeatable\\ read', application_name: 'tsm-test-rr' },
      retry: { attempts: 1 },
    });
    const pending = s.save({ ...mine, keyId: 'k2' });
    await waitForLockWait('tsm-test-rr');
    await holder.query('COMMIT');
    expectFailure(await pending, 'serialization_failure', '40001', true, 1);
  });

  it('too_many_connections (53300, retryable): a role with CONNECTION LIMIT 0', async () => {
    const role = await db.role('tsm_sp_nocon');
    await asAdmin((c) => c.query(`ALTER ROLE "${role.name}" CONNECTION LIMIT 0`));
    expectFailure(await store({ url: role.url }).save(input()), 'too_many_connections', '53300', true, 3);
  });

  it('connection_error (ECONNREFUSED, retryable): nothing listens on the port', async () => {
    const port = await freePort();
    const r = await store({ url: `postgres://tsm@127.0.0.1:${port}/nowhere` }).save(input());
    expectFailure(r, 'connection_error', 'ECONNREFUSED', true, 3);
  });

  it('connection_error (57P01, retryable): the backend is terminated mid-statement; the retry succeeds', async () => {
    const holder = await db.client();
    await holder.query('BEGIN; LOCK TABLE telegram_sessions IN ACCESS EXCLUSIVE MODE');
    const s = store({ poolConfig: { application_name: 'tsm-test-kill' }, retry: { attempts: 3, baseDelayMs: 20 }, metrics: true });
    const pending = s.save(input());
    await waitForLockWait('tsm-test-kill');
    await db.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tsm-test-kill'`);
    await holder.query('ROLLBACK');
    const r = await pending;
    // Usually the second attempt succeeds; on a loaded machine a retry can meet the dying
    // connection once more. Every failed attempt must have been the terminated connection.
    assert.ok(r.ok && r.attempts >= 2, JSON.stringify(r));
    const text = await s.metricsText();
    assert.match(text, new RegExp(`session_save_errors_total\\{error_type="connection_error"\\} ${r.attempts - 1}\\n`), text);
    assert.doesNotMatch(text, /session_save_errors_total\{error_type="(?!connection_error)[a-z_]+"\} [1-9]/, 'no other kind of failure');
  });

  it('database_error (anything else, here 23514 check_violation): not retried', async () => {
    expectFailure(await store({ schema: 'chk' }).save(input({ status: 'bogus' })), 'database_error', '23514', false, 1);
  });

  it('database_error (42P01): no telegram_sessions in the schema at all', async () => {
    await db.sql('CREATE SCHEMA IF NOT EXISTS empty');
    expectFailure(await store({ schema: 'empty', via: 'statement' }).save(input()), 'database_error', '42P01', false, 1);
  });
});
