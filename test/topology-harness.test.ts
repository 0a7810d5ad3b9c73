/**
 * Self-test of test/helpers/topology.ts: the real parts the production-topology tests stand on.
 * PgBouncer in both modes answers, a private server survives a crash and a restart, a standby
 * made with pg_basebackup is in recovery and follows its primary, the blackhole never answers,
 * and requirePart skips outside CI and fails under CI.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase } from './helpers/db.js';
import { requirePart, startBlackhole, startPgBouncer, startServer, startStandby } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

async function one(config: pg.ClientConfig | string, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client(config);
  c.on('error', () => {});
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end().catch(() => {});
  }
}

describe('requirePart', () => {
  it('skips with a message outside CI and throws under CI=true', () => {
    const saved = { bin: process.env.TSM_TEST_PG_BIN, ci: process.env.CI };
    try {
      process.env.TSM_TEST_PG_BIN = '/nonexistent/bin';
      delete process.env.CI;
      const reason = requirePart('postgres');
      assert.match(reason ?? '', /missing postgres/);
      process.env.CI = 'true';
      assert.throws(() => requirePart('postgres'), /CI=true and a required part is missing: postgres/);
    } finally {
      if (saved.bin === undefined) delete process.env.TSM_TEST_PG_BIN;
      else process.env.TSM_TEST_PG_BIN = saved.bin;
      if (saved.ci === undefined) delete process.env.CI;
      else process.env.CI = saved.ci;
    }
  });
});

describe('PgBouncer in front of the test server', { skip: requirePart('pgbouncer') }, () => {
  for (const mode of ['transaction', 'session'] as const) {
    it(`${mode} mode answers and reports its pool mode`, async () => {
      const role = await db.role('tsm_bouncer');
      const bouncer = await startPgBouncer({ mode, users: [{ name: role.name, password: role.password }] });
      const r = await one(bouncer.url(db.name, { name: role.name }), 'SELECT current_database() AS d, current_user AS u');
      assert.deepEqual(r.rows[0], { d: db.name, u: role.name });
      const dbs = await bouncer.admin_sql('SHOW CONFIG');
      const poolMode = dbs.rows.find((row: { key: string }) => row.key === 'pool_mode') as { value: string } | undefined;
      assert.equal(poolMode?.value, mode);
      const ignored = dbs.rows.find((row: { key: string }) => row.key === 'ignore_startup_parameters') as { value: string } | undefined;
      assert.equal(ignored?.value, 'extra_float_digits,application_name');
      // A role added later logs in after the reload.
      const late = await db.role('tsm_bouncer_late');
      await bouncer.addUser(late.name, late.password);
      const r2 = await one(bouncer.url(db.name, { name: late.name }), 'SELECT current_user AS u');
      assert.equal(r2.rows[0].u, late.name);
      await bouncer.stop();
      await assert.rejects(one({ connectionString: bouncer.url(db.name), connectionTimeoutMillis: 2000 }, 'SELECT 1'));
    });
  }
});

describe('private servers', { skip: requirePart('postgres') }, () => {
  it('survives an immediate stop (a crash) and starts again on the same port with its data', async () => {
    const srv = await startServer();
    await srv.sql('CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)');
    const pid = srv.pid;
    await srv.stop({ mode: 'immediate' });
    assert.equal(srv.running, false);
    await assert.rejects(srv.sql('SELECT 1'));
    await srv.start();
    assert.notEqual(srv.pid, pid);
    assert.deepEqual((await srv.sql('SELECT n FROM kept')).rows, [{ n: 42 }]);
    await srv.stop({ mode: 'fast' });
    await srv.start();
    assert.equal((await srv.sql('SELECT count(*)::int AS n FROM kept')).rows[0].n, 1);
  });

  it('a TLS-only server refuses plain connections and accepts TLS ones', async (t) => {
    if (requirePart('openssl')) return t.skip(requirePart('openssl'));
    const srv = await startServer({ tls: true });
    assert.ok(srv.tls);
    const r = await srv.sql('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    assert.equal(r.rows[0].ssl, true);
    await assert.rejects(one({ ...srv.adminConfig(), ssl: false }, 'SELECT 1'), (e: { code?: string }) => e.code === '28000');
  });

  it('a standby made with pg_basebackup is in recovery and follows its primary', async (t) => {
    if (requirePart('pg_basebackup')) return t.skip(requirePart('pg_basebackup'));
    const primary = await startServer();
    await primary.sql('CREATE TABLE t (n int)');
    const standby = await startStandby(primary);
    assert.equal((await standby.sql('SELECT pg_is_in_recovery() AS r')).rows[0].r, true);
    assert.equal((await primary.sql('SELECT pg_is_in_recovery() AS r')).rows[0].r, false);
    await primary.sql('INSERT INTO t VALUES (7)');
    await waitFor('the row replicated to the standby', async () => (await standby.sql('SELECT count(*)::int AS n FROM t')).rows[0].n === 1);
    await assert.rejects(standby.sql('INSERT INTO t VALUES (8)'), (e: { code?: string }) => e.code === '25006');
    await standby.promote();
    await standby.sql('INSERT INTO t VALUES (8)');
    assert.equal((await standby.sql('SELECT count(*)::int AS n FROM t')).rows[0].n, 2);
  });
});

describe('blackhole', () => {
  it('accepts a connection and never answers', async () => {
    const hole = await startBlackhole();
    const started = Date.now();
    await assert.rejects(one({ connectionString: hole.url(), connectionTimeoutMillis: 800 }, 'SELECT 1'), /timeout/i);
    assert.ok(Date.now() - started >= 700, 'gave up only at the timeout');
    assert.equal(hole.accepted, 1);
  });
});
