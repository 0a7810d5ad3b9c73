/**
 * The verdicts doctor cannot provoke on the test servers (a PostgreSQL 12, tsm migration histories
 * before `tsm migrate` exists, upsert bodies of other shapes): the checks' pure judging functions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connection } from '../src/doctor/checks/connection.js';
import { judgeBody } from '../src/doctor/checks/function-upsert.js';
import { judgeMigrations } from '../src/doctor/checks/migrations.js';
import type { Facts } from '../src/doctor/types.js';

const env = { schema: 'public', minSessionLength: 4096 };
const facts: Facts = {
  schemaExists: true,
  tableExists: true,
  columns: [],
  partitioning: null,
  partitions: [],
  estimatedRows: 0,
  migrations: null,
};

describe('doctor verdicts', () => {
  it('connection: below PostgreSQL 13 fails, 13 and later are ok', () => {
    const old = connection.evaluate([{ server_version: '12.19', server_version_num: 120019, role: 'app', database: 'app' }], env, facts);
    assert.equal(old.status, 'fail');
    assert.match(old.detail, /below PostgreSQL 13/);
    const ok = connection.evaluate([{ server_version: '13.0', server_version_num: 130000, role: 'app', database: 'app' }], env, facts);
    assert.equal(ok.status, 'ok');
  });

  it('function bodies: ON CONFLICT ok, UPDATE-then-INSERT racy, a unique_violation retry loop ok', () => {
    assert.equal(
      judgeBody(`BEGIN INSERT INTO t AS x (user_id) VALUES (p) ON CONFLICT (user_id) WHERE user_id IS NOT NULL
                 DO UPDATE SET s = EXCLUDED.s WHERE x.tenant_id = EXCLUDED.tenant_id RETURNING id INTO v; END`).status,
      'ok',
    );
    const racy = judgeBody(`BEGIN UPDATE telegram_sessions SET s = p WHERE user_id = u RETURNING id INTO v;
                 IF v IS NULL THEN INSERT INTO telegram_sessions (user_id) VALUES (u) RETURNING id INTO v; END IF; END`);
    assert.equal(racy.status, 'warn');
    assert.match(racy.detail, /^racy/);
    // A comment mentioning ON CONFLICT does not make a racy body safe.
    const commented = judgeBody(`-- TODO: use ON CONFLICT (user_id)
      BEGIN UPDATE t SET s = p WHERE user_id = u; IF NOT FOUND THEN INSERT INTO t (user_id) VALUES (u); END IF; END`);
    assert.match(commented.detail, /^racy/);
    assert.equal(
      judgeBody(`LOOP UPDATE t SET s = p WHERE user_id = u; IF found THEN RETURN; END IF;
                 BEGIN INSERT INTO t (user_id) VALUES (u); RETURN; EXCEPTION WHEN unique_violation THEN END; END LOOP`).status,
      'ok',
    );
    assert.match(judgeBody('INSERT INTO t (user_id) VALUES (u) ON CONFLICT (id) DO NOTHING').detail, /not on \(user_id\)/);
  });

  it('migrations: no table skipped, pending or modified warn, all applied ok', () => {
    assert.equal(judgeMigrations({ table: false, migrations: [] }, env).status, 'skipped');
    const at = '2025-01-01T00:00:00Z';
    const ok = judgeMigrations({ table: true, migrations: [{ name: '001_table', state: 'applied', applied_at: at }] }, env);
    assert.deepEqual(ok, { status: 'ok', detail: '1 migration applied, none pending' });
    const pending = judgeMigrations(
      {
        table: true,
        migrations: [
          { name: '001_table', state: 'applied', applied_at: at },
          { name: '002_index', state: 'pending', applied_at: null },
        ],
      },
      { ...env, schema: 'tg' },
    );
    assert.equal(pending.status, 'warn');
    assert.equal(pending.detail, '1 pending (002_index)');
    assert.equal(pending.remedy, 'tsm migrate up --schema tg');
    const modified = judgeMigrations({ table: true, migrations: [{ name: '001_table', state: 'modified', applied_at: at }] }, env);
    assert.equal(modified.status, 'warn');
    assert.match(modified.detail, /modified since applied \(001_table\)/);
    assert.match(modified.remedy ?? '', /tsm migrate status/);
  });
});

describe('doctor remedies paste correctly', () => {
  it('names with a control character are written U&"…", everything else quoted as usual', async () => {
    const { sqlName, pasteable, remedyText } = await import('../src/doctor/util.js');
    assert.equal(sqlName('plain'), '"plain"');
    assert.equal(sqlName('it"s'), '"it""s"');
    assert.equal(sqlName('a\nb'), 'U&"a\\000ab"');
    assert.equal(sqlName('back\\slash\ttab"q'), 'U&"back\\\\slash\\0009tab""q"');
    // Whole statements: quoted identifiers rewritten, string literals and U& names left alone.
    assert.equal(pasteable(`DROP INDEX "s"."i\nx"; SELECT 'a"\nb'`), `DROP INDEX "s".U&"i\\000ax"; SELECT 'a"\nb'`);
    assert.equal(pasteable('ALTER INDEX U&"a\\000ab" RENAME TO "c"'), 'ALTER INDEX U&"a\\000ab" RENAME TO "c"');
    const remedy = remedyText(['tsm migrate up'], ['DROP INDEX CONCURRENTLY IF EXISTS "public"."bad\nname";']);
    assert.equal(remedy.split('\n').length, 3, 'one line per statement');
  });

  it('migrations applied by an earlier tsm count as applied, and say so', () => {
    const at = '2025-01-01T00:00:00Z';
    const ok = judgeMigrations(
      {
        table: true,
        migrations: [
          { name: '0001_create_table', state: 'applied', applied_at: at, applied_by_earlier: 'tsm 0.1.0 (build 897b880)' },
          { name: '0006_x', state: 'applied', applied_at: at },
        ],
      },
      env,
    );
    assert.deepEqual(ok, { status: 'ok', detail: '2 migrations applied (1 by an earlier tsm: tsm 0.1.0 (build 897b880)), none pending' });
  });
});
