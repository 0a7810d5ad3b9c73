/**
 * Bounded doctor cost (issue 11): data checks count exactly on small tables (on index-only paths
 * where the indexes allow it, checked with EXPLAIN), report the planner's estimate above the row
 * budget ("estimated", "exact": false), agree with the exact count on small tables, and say
 * `unknown` (warn, never fail) when the exact count runs out of time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { dataDuplicates } from '../src/doctor/checks/data-duplicates.js';
import { dataNullUserId } from '../src/doctor/checks/data-null-user-id.js';
import { LEAF_PLAN_SQL, type LeafPlan } from '../src/doctor/data-plan.js';
import { inReadOnlyTransaction } from '../src/doctor/readonly.js';
import type { DataCheck, DoctorEnv } from '../src/doctor/types.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { doctor, partitionedTable } from './helpers/doctor.js';
import { fixedSchema, preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

/** `n` rows, `nulls` of them without user_id, and user_ids repeated as `dups` says (user_id → extra rows). */
async function fill(schema: string, n: number, nulls: number, dups: Record<string, number> = {}): Promise<void> {
  await db.sql(`INSERT INTO "${schema}".telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
    SELECT 't', CASE WHEN g <= ${nulls} THEN NULL ELSE 'u' || g END, repeat('s', 68), 'k1', 'authorized' FROM generate_series(1, ${n}) g`);
  for (const [user, extra] of Object.entries(dups)) {
    await db.sql(`INSERT INTO "${schema}".telegram_sessions (tenant_id, user_id) SELECT 't', $1 FROM generate_series(1, ${extra})`, [user]);
  }
}

/** The plan doctor makes for `check` on `schema`, EXPLAINed with the settings it runs under. */
async function explainExact(check: DataCheck<object, LeafPlan>, schema: string): Promise<{ path: string; plan: string }> {
  const client: pg.Client = await db.client();
  const env: DoctorEnv = { schema, minSessionLength: 4096 };
  const leaves = (await client.query<LeafPlan>(LEAF_PLAN_SQL, [schema])).rows;
  const q = check.exact(env, leaves);
  const [res] = await inReadOnlyTransaction(client, `EXPLAIN (COSTS OFF) ${q.sql}`, q.settings);
  return { path: q.path, plan: res!.rows.map((r) => String(Object.values(r)[0])).join('\n') };
}

/** A table that looks like `rows` rows to the planner (autovacuum off so nothing corrects it). */
async function looksLarge(schema: string, rows: number): Promise<void> {
  await db.sql(`ALTER TABLE "${schema}".telegram_sessions SET (autovacuum_enabled = off)`);
  await db.sql(`ANALYZE "${schema}".telegram_sessions`);
  await db.sql(`UPDATE pg_class SET reltuples = ${rows} WHERE oid = '"${schema}".telegram_sessions'::regclass`);
}

describe('tsm doctor: bounded data checks', () => {
  it('exact and estimated agree on a small table (NULL user_ids and duplicates)', async () => {
    await db.sql(preFixSchema('agree'));
    await fill('agree', 2000, 37, { u500: 2, u900: 1, u1200: 1 });
    await db.sql('ANALYZE agree.telegram_sessions');
    const exact = await doctor(db.url, ['--schema', 'agree', '--exact']);
    const est = await doctor(db.url, ['--schema', 'agree', '--estimate']);
    assert.equal(exact.report.data.mode, 'exact');
    assert.equal(est.report.data.mode, 'estimate');

    const en = exact.check('data.null-user-id');
    const sn = est.check('data.null-user-id');
    assert.deepEqual([en.status, en.exact, sn.status, sn.exact], ['warn', true, 'warn', false]);
    assert.match(en.detail, /^37 rows with NULL user_id/);
    assert.match(sn.detail, /^about 37 rows with NULL user_id \(pending or abandoned logins\) \(estimated from planner statistics of \d{4}-\d\d-\d\d \d\d:\d\d UTC, table of about 2,004 rows\); --estimate$/);

    const ed = exact.check('data.duplicates');
    const sd = est.check('data.duplicates');
    assert.equal(ed.status, 'fail');
    assert.equal(ed.detail, '3 user_ids with more than one row (7 rows): "u500" ×3, "u1200" ×2, "u900" ×2');
    assert.equal(sd.status, 'warn', 'an estimate warns, never fails');
    assert.equal(sd.exact, false);
    // 7 rows for 3 user_ids: 4 beyond one per user_id, the same number both ways.
    assert.match(sd.detail, /^about 4 rows beyond one per user_id; most repeated: "u500" ≈×3/);
  });

  it('above the row budget (a table made to look like 5,000,000 rows): estimates, "exact": false; --exact counts', async () => {
    await db.sql(fixedSchema('big'));
    await fill('big', 2000, 10);
    await looksLarge('big', 5_000_000);
    const r = await doctor(db.url, ['--schema', 'big']);
    assert.equal(r.code, 0);
    assert.equal(r.report.data.max_exact_rows, 1_000_000);
    assert.match(r.check('table').detail, /about 5,000,000 rows \(planner estimate\)/);
    const n = r.check('data.null-user-id');
    assert.equal(n.exact, false);
    assert.equal(n.status, 'warn');
    // null_frac 10/2000 of 5,000,000 rows.
    assert.match(n.detail, /^about 25,000 rows with NULL user_id .*estimated from planner statistics.*; the table is above the exact-scan budget of 1,000,000 rows; --exact counts$/);
    // The unique index settles duplicates exactly, without a scan, whatever the size.
    assert.equal(r.check('data.duplicates').exact, true);
    assert.match(r.check('data.duplicates').detail, /^none possible/);

    const human = await runTsm(['doctor', '-d', db.url, '--schema', 'big']);
    assert.match(human.stdout, /\nnot counted exactly: data\.null-user-id \(planner estimates or unknown/);

    const exact = await doctor(db.url, ['--schema', 'big', '--exact']);
    assert.equal(exact.check('data.null-user-id').exact, true);
    assert.match(exact.check('data.null-user-id').detail, /^10 rows with NULL user_id/);

    // Without statistics to estimate from, above the budget: unknown (warn), never a scan.
    await db.sql(preFixSchema('nostats'));
    await fill('nostats', 100, 1, { u50: 1 });
    await db.sql(`ALTER TABLE nostats.telegram_sessions SET (autovacuum_enabled = off)`);
    await db.sql(`UPDATE pg_class SET reltuples = 5000000 WHERE oid = 'nostats.telegram_sessions'::regclass`);
    const u = await doctor(db.url, ['--schema', 'nostats']);
    for (const id of ['data.duplicates', 'data.null-user-id']) {
      assert.equal(u.check(id).status, 'warn', id);
      assert.equal(u.check(id).exact, false, id);
      assert.match(u.check(id).detail, /^unknown: the table is above the exact-scan budget of 1,000,000 rows, and there are no planner statistics/, id);
      assert.match(u.check(id).remedy ?? '', /tsm doctor --exact --data-timeout 0 --schema nostats/);
      assert.match(u.check(id).remedy ?? '', /ANALYZE "nostats"\."telegram_sessions";/);
    }
  });

  it('an exact count out of time is unknown (warn), never fail', async () => {
    await db.sql(preFixSchema('slow'));
    await fill('slow', 200_000, 5, { u7: 1 });
    const r = await doctor(db.url, ['--schema', 'slow', '--exact', '--data-timeout', '1ms']);
    const d = r.check('data.duplicates');
    assert.equal(d.status, 'warn');
    assert.equal(d.exact, false);
    assert.match(d.detail, /^unknown: the exact scan did not finish within 1 ms \(--data-timeout\)/);
    assert.match(d.remedy ?? '', /--exact --data-timeout 0/);
    assert.equal(r.check('data.null-user-id').status, 'warn');
    // The failures are the pre-fix schema's, not the data checks'.
    assert.deepEqual(
      r.report.checks.filter((c) => c.status === 'fail').map((c) => c.id),
      ['columns.diagnostics', 'index.user-id-unique', 'index.on-conflict', 'function.upsert'],
    );
    const unbounded = await doctor(db.url, ['--schema', 'slow', '--exact', '--data-timeout', '0']);
    assert.equal(unbounded.check('data.duplicates').status, 'fail');
    assert.match(unbounded.check('data.duplicates').detail, /^1 user_id with more than one row \(2 rows\): "u7" ×2$/);
  });

  it('usage: --exact with --estimate, or a bad --data-timeout, is exit 2 before connecting', async () => {
    const url = 'postgres://nobody@127.0.0.1:1/none';
    for (const args of [['--exact', '--estimate'], ['--data-timeout', 'soon']]) {
      const r = await runTsm(['doctor', '-d', url, ...args]);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, /^tsm: (--exact and --estimate exclude each other|--data-timeout: 'soon' is not a duration)/);
    }
  });
});

describe('tsm doctor: index-only exact paths (EXPLAIN)', () => {
  it('NULL user_ids on the fixed schema: the primary key minus the partial unique index, both index-only', async () => {
    await db.sql(fixedSchema('io'));
    await fill('io', 5000, 20);
    await db.sql('VACUUM ANALYZE io.telegram_sessions');
    const { path, plan } = await explainExact(dataNullUserId, 'io');
    assert.equal(path, 'index-only');
    assert.equal((plan.match(/Index Only Scan using telegram_sessions_pkey/g) ?? []).length, 1, plan);
    assert.equal((plan.match(/Index Only Scan using telegram_sessions_user_id_unique/g) ?? []).length, 1, plan);
    assert.doesNotMatch(plan, /Seq Scan|Bitmap Heap Scan/, plan);
    // And it counts right.
    const r = await doctor(db.url, ['--schema', 'io']);
    assert.match(r.check('data.null-user-id').detail, /^20 rows with NULL user_id/);
  });

  it('with a full index on user_id: NULL user_ids and duplicates walk that index (no heap, no hash)', async () => {
    await db.sql(preFixSchema('walk'));
    await db.sql('CREATE INDEX walk_user_id ON walk.telegram_sessions (user_id)');
    await fill('walk', 5000, 20, { u77: 2 });
    await db.sql('VACUUM ANALYZE walk.telegram_sessions');
    const nulls = await explainExact(dataNullUserId, 'walk');
    assert.equal(nulls.path, 'index-only');
    assert.match(nulls.plan, /Index Only Scan using walk_user_id/);
    assert.match(nulls.plan, /Index Cond: \(user_id IS NULL\)/);
    assert.doesNotMatch(nulls.plan, /Seq Scan/);
    const dups = await explainExact(dataDuplicates, 'walk');
    assert.equal(dups.path, 'index-only');
    assert.match(dups.plan, /GroupAggregate/);
    assert.match(dups.plan, /Index Only Scan using walk_user_id/);
    assert.doesNotMatch(dups.plan, /Seq Scan|HashAggregate/, dups.plan);
    const r = await doctor(db.url, ['--schema', 'walk']);
    assert.match(r.check('data.duplicates').detail, /^1 user_id with more than one row \(3 rows\): "u77" ×3$/);
  });

  it('partitioned by HASH (user_id) with the unique index: each partition index-only, no heap', async () => {
    await db.sql(partitionedTable('pio', 'hash'));
    // A full index on every partition (a partitioned table's primary key would have to include user_id).
    await db.sql('CREATE INDEX pio_created_at ON pio.telegram_sessions (created_at)');
    await db.sql('CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON pio.telegram_sessions (user_id) WHERE user_id IS NOT NULL');
    await fill('pio', 4000, 12);
    await db.sql('VACUUM ANALYZE pio.telegram_sessions');
    const { path, plan } = await explainExact(dataNullUserId, 'pio');
    assert.equal(path, 'index-only');
    assert.equal((plan.match(/Index Only Scan/g) ?? []).length, 8, plan);
    assert.doesNotMatch(plan, /Seq Scan/, plan);
  });

  it('without a usable index: the heap, without planner settings', async () => {
    await db.sql(preFixSchema('heap'));
    const { path } = await explainExact(dataDuplicates, 'heap');
    assert.equal(path, 'heap');
  });
});
