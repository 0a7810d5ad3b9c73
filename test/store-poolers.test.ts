/**
 * SessionStore, `tsm test-write` and `tsm bench` through a real PgBouncer 1.18 (issue 10): in
 * transaction mode consecutive statements run on different server connections, so named prepared
 * statements meet "already exists" (42P05) or "does not exist" (26000). On main: test-write failed
 * with 42P05, bench counted `database_error` with no message, and the library's default options
 * saved 20 of 200. Now: prepared_statement_conflict is classified, the store falls back to unnamed
 * statements by itself (the failed call never ran: run it again unnamed, stay unnamed), and
 * `preparedStatements: false` / `--no-prepare` start unnamed. Session mode keeps prepared
 * statements (a server connection per client).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { classifyError, SessionStore, type SaveResult, type SessionStoreOptions } from '../src/index.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';
import { requirePart, startPgBouncer, type PgBouncer } from './helpers/topology.js';
import { rejection, settle } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));

const rowsOf = async (tenant: string): Promise<number> =>
  (await db.sql('SELECT count(*)::int AS n FROM telegram_sessions WHERE tenant_id = $1', [tenant])).rows[0].n;

describe('prepared_statement_conflict: provoked for real, classified by SQLSTATE', () => {
  it('42P05 (already exists) and 26000 (does not exist): not retryable', async () => {
    const c = await db.client();
    await c.query('PREPARE tsm_twice AS SELECT 1');
    const dup = classifyError(await rejection(settle(c.query('PREPARE tsm_twice AS SELECT 1')), 'a second PREPARE'));
    assert.deepEqual([dup.code, dup.sqlstate, dup.retryable], ['prepared_statement_conflict', '42P05', false]);
    const missing = classifyError(await rejection(settle(c.query('EXECUTE tsm_never_prepared')), 'EXECUTE of nothing'));
    assert.deepEqual([missing.code, missing.sqlstate, missing.retryable], ['prepared_statement_conflict', '26000', false]);
  });
});

const skip = requirePart('pgbouncer');

describe('through PgBouncer in transaction mode', { skip }, () => {
  let bouncer: PgBouncer;
  const stores: SessionStore[] = [];
  before(async () => {
    // Two server connections for ten clients: the third client's Parse meets a server connection
    // that already has the statement (42P05), whatever order PgBouncer hands them out in.
    bouncer = await startPgBouncer({ mode: 'transaction', settings: { default_pool_size: '2' } });
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });
  const store = (o: Partial<SessionStoreOptions>): SessionStore => {
    const s = new SessionStore({ connectionString: bouncer.url(db.name), poolConfig: { max: 10 }, metrics: false, ...o });
    stores.push(s);
    return s;
  };

  /** 200 saves, 20 at a time from a pool of 10 client connections, each on its own user id. */
  async function saveMany(s: SessionStore, tenant: string): Promise<SaveResult[]> {
    const out: SaveResult[] = [];
    for (let wave = 0; wave < 10; wave++) {
      out.push(
        ...(await Promise.all(
          Array.from({ length: 20 }, (_, i) => s.save({ tenantId: tenant, userId: `${tenant}-${wave}-${i}`, sessionStringEnc: 'S'.repeat(800), keyId: 'k' })),
        )),
      );
    }
    return out;
  }

  for (const via of ['function', 'statement'] as const) {
    it(`the library's default options, via ${via}: 200 of 200 saved; the store went unnamed by itself`, async () => {
      const s = store({ via });
      assert.equal(s.preparedStatements, true, 'starts prepared');
      const tenant = `tx-default-${via}`;
      const results = await saveMany(s, tenant);
      const failed = results.filter((r) => !r.ok);
      assert.deepEqual(failed, [], 'no save failed');
      assert.equal(await rowsOf(tenant), 200);
      assert.equal(s.preparedStatements, false, 'a conflict was met and the store switched to unnamed statements');
      assert.ok(results.every((r) => r.attempts === 1), 'the fallback is not a retry: every save took one attempt');
    });
  }

  it('preparedStatements: false: unnamed from the start, 200 of 200 saved, and updates keep the id', async () => {
    const s = store({ preparedStatements: false });
    assert.equal(s.preparedStatements, false);
    const tenant = 'tx-unnamed';
    const first = await saveMany(s, tenant);
    assert.ok(first.every((r) => r.ok));
    const again = await saveMany(s, tenant);
    assert.ok(again.every((r) => r.ok));
    assert.deepEqual(
      again.map((r) => r.ok && r.id),
      first.map((r) => r.ok && r.id),
      'the second save of each user returned the same row id',
    );
    assert.equal(await rowsOf(tenant), 200);
  });

  it('a pool of yours through the pooler: the same fallback', async () => {
    const pool = new pg.Pool({ connectionString: bouncer.url(db.name), max: 10 });
    pool.on('error', () => {});
    try {
      const s = new SessionStore({ pool, metrics: false });
      const results = await saveMany(s, 'tx-own-pool');
      assert.deepEqual(results.filter((r) => !r.ok), []);
      assert.equal(s.preparedStatements, false);
    } finally {
      await pool.end();
    }
  });

  it('tsm test-write: exit 0, its rows removed; it reports that it went unnamed', async () => {
    const r = await runTsm(['test-write', '--json', '-d', bouncer.url(db.name)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const j = r.json();
    assert.equal(j.ok, true);
    assert.deepEqual(j.race.errors, {});
    assert.equal(j.prepared_statements, false);
    assert.equal(await rowsOf('tsm-test'), 0);
  });

  it('tsm test-write --no-prepare: exit 0, unnamed throughout', async () => {
    const r = await runTsm(['test-write', '-d', bouncer.url(db.name), '--no-prepare', '--rounds', '5']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /via function, unnamed statements/);
    assert.match(r.stdout, /\nok: every session was saved/);
  });

  for (const extra of [[], ['--no-prepare']]) {
    it(`tsm bench ${extra.join(' ')}: no errors, rows removed`, async () => {
      const r = await runTsm(['bench', '--json', '-d', bouncer.url(db.name), '--clients', '4', '--duration', '1', '--users', '100', ...extra]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const j = r.json();
      assert.deepEqual(j.errors, {});
      assert.ok(j.calls > 20, `calls ${j.calls}`);
      assert.equal(j.prepared_statements, false);
      assert.equal(await rowsOf('tsm-bench'), 0);
    });
  }
});

describe('through PgBouncer in session mode', { skip }, () => {
  it('prepared statements keep working: 200 of 200, still prepared; test-write and bench pass prepared', async () => {
    const bouncer = await startPgBouncer({ mode: 'session' });
    const s = new SessionStore({ connectionString: bouncer.url(db.name), poolConfig: { max: 10 }, metrics: false });
    try {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => s.save({ tenantId: 'session-mode', userId: `sm-${i}`, sessionStringEnc: 'S'.repeat(800), keyId: 'k' })),
      );
      assert.deepEqual(results.filter((r) => !r.ok), []);
      assert.equal(s.preparedStatements, true);
    } finally {
      await s.close();
    }
    assert.equal(await rowsOf('session-mode'), 200);
    const tw = await runTsm(['test-write', '--json', '-d', bouncer.url(db.name), '--rounds', '5']);
    assert.equal(tw.code, 0, tw.stdout + tw.stderr);
    assert.equal(tw.json().prepared_statements, true);
    const b = await runTsm(['bench', '--json', '-d', bouncer.url(db.name), '--clients', '2', '--duration', '500ms', '--users', '50']);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    assert.deepEqual(b.json().errors, {});
    assert.equal(b.json().prepared_statements, true);
  });
});
