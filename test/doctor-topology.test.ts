/**
 * tsm doctor where production puts it (issue 10): on a hot standby (pg_basebackup), on a primary
 * whose sessions default to read-only, through PgBouncer in transaction and session mode, and
 * next to a migration holding the table's ACCESS EXCLUSIVE lock. Everything doctor runs is
 * read-only; it must report the same schema everywhere, say where writes must go, and leave no
 * setting behind on a pooled server connection.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import pg from 'pg';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { allOkExcept, doctor, pastedRemedySql } from './helpers/doctor.js';
import { fixedSchema, preFixSchema } from './helpers/fixtures.js';
import { requirePart, startPgBouncer, startServer, startStandby } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + preFixSchema('prefix'));
await db.sql(`INSERT INTO public.telegram_sessions (tenant_id, user_id) SELECT 't', 'u' || g FROM generate_series(1, 500) g;
  INSERT INTO public.telegram_sessions (tenant_id, user_id) VALUES ('t', NULL);
  INSERT INTO prefix.telegram_sessions (tenant_id, user_id) VALUES ('t', 'd'), ('t', 'd'), ('t', NULL)`);

describe('tsm doctor: server.writable', () => {
  it('a primary whose database defaults to read-only: every schema check ok, server.writable fails; the pasted remedy fixes it', async () => {
    await db.sql(`ALTER DATABASE "${db.name}" SET default_transaction_read_only = on`);
    try {
      const r = await doctor(db.url);
      assert.equal(r.code, 1);
      assert.deepEqual(r.statuses, allOkExcept({ migrations: 'skipped', 'data.null-user-id': 'warn', 'server.writable': 'fail' }));
      const w = r.check('server.writable');
      assert.match(w.detail, /^primary, but its sessions default to read-only \(default_transaction_read_only = on, set by database, role \S+, database \S+\): every save fails with 25006/);
      const human = await runTsm(['doctor', '-d', db.url]);
      const pasted = pastedRemedySql(human.stdout, 'server.writable');
      assert.deepEqual(pasted, [`ALTER DATABASE "${db.name}" RESET default_transaction_read_only;`]);
      for (const sql of pasted) await db.sql(sql);
    } finally {
      await db.sql(`ALTER DATABASE "${db.name}" RESET default_transaction_read_only`);
    }
    const fixed = await doctor(db.url);
    assert.equal(fixed.code, 0);
    assert.equal(fixed.check('server.writable').detail, 'primary, writable');
  });
});

describe('tsm doctor on a hot standby', { skip: requirePart('postgres', 'pg_basebackup') }, () => {
  it('warns "hot standby", checks the schema like on the primary (planner probe and counts included), writes nothing', async () => {
    const primary = await startServer();
    await primary.sql('CREATE DATABASE app');
    await primary.sql(fixedSchema('public') + preFixSchema('prefix'), undefined, 'app');
    await primary.sql(`INSERT INTO prefix.telegram_sessions (tenant_id, user_id) VALUES ('t', 'd'), ('t', 'd'), ('t', NULL)`, undefined, 'app');
    const standby = await startStandby(primary);
    await waitFor('the standby replays the rows', async () => {
      const r = await standby.sql('SELECT count(*)::int AS n FROM prefix.telegram_sessions', undefined, 'app').catch(() => null);
      return r?.rows[0].n === 3;
    }, { timeoutMs: 30_000, everyMs: 100 });

    const fixed = await doctor(standby.url('app'), ['--exact']);
    assert.equal(fixed.code, 0, 'a warning: doctor itself succeeded');
    assert.deepEqual(fixed.statuses, allOkExcept({ migrations: 'skipped', 'server.writable': 'warn' }));
    assert.match(fixed.check('server.writable').detail, /^hot standby: schema checked; migrate, dedupe and writes must target the primary/);
    assert.match(fixed.check('index.on-conflict').detail, /arbiter index: telegram_sessions_user_id_unique/);

    const onPrimary = await doctor(primary.url('app'), ['--schema', 'prefix', '--exact']);
    const onStandby = await doctor(standby.url('app'), ['--schema', 'prefix', '--exact']);
    const withoutServer = (s: Record<string, string>): Record<string, string> => ({ ...s, 'server.writable': '-' });
    assert.deepEqual(withoutServer(onStandby.statuses), withoutServer(onPrimary.statuses), 'the same schema verdicts as on the primary');
    assert.match(onStandby.check('index.on-conflict').detail, /42P10/);
    assert.match(onStandby.check('data.duplicates').detail, /^1 user_id with more than one row \(2 rows\): "d" ×2$/);
    assert.equal(onStandby.check('data.null-user-id').detail.split(' (')[0], '1 row with NULL user_id');
  });
});

describe('tsm doctor through PgBouncer', { skip: requirePart('pgbouncer') }, () => {
  for (const mode of ['transaction', 'session'] as const) {
    it(`${mode} mode: the same report as a direct connection, the pooler named, and no setting left on the pooled server connection`, async () => {
      // One server connection: whatever doctor set would be seen by the next client.
      const bouncer = await startPgBouncer({ mode, settings: { default_pool_size: '1' } });
      for (const args of [[], ['--schema', 'prefix'], ['--exact'], ['--schema', 'prefix', '--estimate']]) {
        const direct = await doctor(db.url, args);
        const pooled = await doctor(bouncer.url(db.name), args);
        assert.equal(pooled.code, direct.code, `${args.join(' ')}: exit code`);
        const shape = (r: typeof direct): unknown => r.report.checks.map((c) => [c.id, c.status, c.exact, c.id === 'server.writable' || c.id === 'connection' ? '' : c.detail]);
        assert.deepEqual(shape(pooled), shape(direct), `${args.join(' ')}: the same checks, statuses and details`);
        assert.match(pooled.check('server.writable').detail, /^primary, writable; reached through a pooler or proxy/);
        assert.equal(direct.check('server.writable').detail, 'primary, writable');
      }
      const c = new pg.Client({ connectionString: bouncer.url(db.name) });
      await c.connect();
      try {
        const r = await c.query(`SELECT current_setting('lock_timeout') AS lock_timeout, current_setting('statement_timeout') AS statement_timeout,
          current_setting('enable_seqscan') AS enable_seqscan, current_setting('jit') AS jit, current_setting('transaction_read_only') AS ro`);
        const defaults = await db.sql(`SELECT current_setting('lock_timeout') AS lock_timeout, current_setting('statement_timeout') AS statement_timeout,
          current_setting('enable_seqscan') AS enable_seqscan, current_setting('jit') AS jit, 'off' AS ro`);
        assert.deepEqual(r.rows[0], defaults.rows[0]);
      } finally {
        await c.end();
      }
    });
  }
});

describe('tsm doctor next to a migration', () => {
  it('Ctrl-C while a count waits for the lock: the waiting statement is cancelled on the server, exit 130', async () => {
    await db.sql(fixedSchema('ctrlc'));
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE ctrlc.telegram_sessions IN ACCESS EXCLUSIVE MODE');
    try {
      const spawned: { child?: ChildProcess } = {};
      const run = runTsm(['doctor', '-d', db.url, '--schema', 'ctrlc', '--exact', '--data-timeout', '0'], { onSpawn: (c) => (spawned.child = c) });
      const waiting = `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm' AND wait_event_type = 'Lock'`;
      await waitFor('doctor waiting for the table lock', async () => ((await db.sql(waiting)).rowCount ?? 0) > 0, { timeoutMs: 30_000 });
      spawned.child?.kill('SIGINT');
      const r = await run;
      assert.equal(r.code, 130, r.stderr);
      assert.match(r.stderr, /interrupted by SIGINT: .*its query was cancelled on the server/);
      await waitFor('no doctor statement left waiting', async () => (await db.sql(waiting)).rowCount === 0, { timeoutMs: 10_000 });
    } finally {
      await holder.query('ROLLBACK');
    }
  });

  it('a table held in ACCESS EXCLUSIVE: the catalog is read without waiting, each check gives up after its lock timeout, nothing fails because of the lock', async () => {
    await db.sql(fixedSchema('locked'));
    await db.sql(`INSERT INTO locked.telegram_sessions (tenant_id, user_id) VALUES ('t', 'a'), ('t', NULL)`);
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE locked.telegram_sessions IN ACCESS EXCLUSIVE MODE');
    try {
      const t0 = Date.now();
      const r = await doctor(db.url, ['--schema', 'locked']);
      const took = Date.now() - t0;
      const nulls = r.check('data.null-user-id');
      assert.equal(nulls.status, 'warn');
      assert.match(nulls.detail, /^unknown: the table stayed locked \(a migration or other DDL\?\) for the 5s doctor waits/);
      assert.equal(nulls.exact, false);
      const probe = r.check('index.on-conflict');
      assert.equal(probe.status, 'warn');
      assert.match(probe.detail, /^unknown: the table stayed locked .*\[55P03\]$/);
      // The catalog checks saw the schema as it is.
      for (const id of ['table', 'columns.required', 'index.user-id-unique', 'index.invalid', 'function.upsert', 'privileges']) {
        assert.equal(r.check(id).status, 'ok', id);
      }
      assert.ok(took < 60_000, `doctor finished (${took} ms) instead of queueing behind the lock`);
    } finally {
      await holder.query('ROLLBACK');
    }
  });
});
