/**
 * tsm doctor on a partitioned telegram_sessions (issue 11): every check looks at the parent and at
 * each partition; a unique index built ON ONLY the parent with partitions not yet attached is
 * named as such (not as "a failed concurrent build"), with statements that work; a partition key
 * that makes a unique user_id impossible is said, with the options; multi-level partitioning.
 * Each state lives in its own schema; remedies are run as a user would paste them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { doctor, partitionedTable, pastedRemedySql, remedySql } from './helpers/doctor.js';

const db = await createTestDatabase(import.meta.url);

/** Runs statements one at a time (CREATE INDEX CONCURRENTLY must be sent alone). */
async function runEach(statements: string[]): Promise<void> {
  for (const s of statements) await db.sql(s);
}

/** The parent index's validity and its attached partition indexes. */
async function parentIndex(schema: string, index: string): Promise<{ valid: boolean; attached: number }> {
  const r = await db.sql(
    `SELECT i.indisvalid AS valid, (SELECT count(*)::int FROM pg_inherits h WHERE h.inhparent = i.indexrelid) AS attached
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, index],
  );
  assert.equal(r.rowCount, 1, `index ${schema}.${index} exists`);
  return r.rows[0];
}

async function rows(schema: string, n: number, dupOf?: string): Promise<void> {
  await db.sql(
    `INSERT INTO "${schema}".telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
     SELECT 't', 'u' || g, repeat('x', 68), 'k1', 'authorized' FROM generate_series(1, ${n}) g`,
  );
  if (dupOf) await db.sql(`INSERT INTO "${schema}".telegram_sessions (tenant_id, user_id) VALUES ('t', $1)`, [dupOf]);
}

describe('tsm doctor: partitioned telegram_sessions', () => {
  it('HASH (user_id), pre-fix: the unique index is missing; the remedy builds it ON ONLY + CONCURRENTLY per partition + ATTACH, and works', async () => {
    await db.sql(partitionedTable('h', 'hash'));
    await rows('h', 200);
    const r = await doctor(db.url, ['--schema', 'h']);
    assert.equal(r.code, 1);
    assert.match(r.check('table').detail, /partitioned by HASH \(user_id\) into 4 partitions/);
    const u = r.check('index.user-id-unique');
    assert.equal(u.status, 'fail');
    assert.match(u.remedy ?? '', /tsm migrate up --schema h {3}\(builds it ON ONLY the parent, CONCURRENTLY on each partition/);
    const sql = remedySql(u.remedy);
    assert.equal(sql.length, 1 + 2 * 4, sql.join('\n'));
    assert.equal(sql[0], 'CREATE UNIQUE INDEX "telegram_sessions_user_id_unique" ON ONLY "h"."telegram_sessions" USING btree (user_id) WHERE (user_id IS NOT NULL);');
    assert.equal(sql[1], 'CREATE UNIQUE INDEX CONCURRENTLY "telegram_sessions_p0_user_id_unique" ON "h"."telegram_sessions_p0" USING btree (user_id) WHERE (user_id IS NOT NULL);');
    assert.equal(sql[2], 'ALTER INDEX "h"."telegram_sessions_user_id_unique" ATTACH PARTITION "h"."telegram_sessions_p0_user_id_unique";');
    assert.equal(r.check('index.on-conflict').status, 'fail');
    assert.equal(r.check('index.invalid').status, 'ok');
    assert.match(r.check('index.invalid').detail, /on the table and its 4 partitions/);
    assert.equal(r.check('data.duplicates').status, 'ok', 'counted across partitions');

    await runEach(sql);
    assert.deepEqual(await parentIndex('h', 'telegram_sessions_user_id_unique'), { valid: true, attached: 4 });
    const after = await doctor(db.url, ['--schema', 'h']);
    assert.equal(after.check('index.user-id-unique').status, 'ok');
    assert.match(after.check('index.user-id-unique').detail, /^telegram_sessions_user_id_unique: unique on \(user_id\) WHERE \(user_id IS NOT NULL\), on every partition$/);
    assert.equal(after.check('index.invalid').status, 'ok');
    assert.equal(after.check('index.invalid').detail, '5 of 5 indexes valid (on the table and its 4 partitions)');
    assert.equal(after.check('index.on-conflict').status, 'ok');
    assert.match(after.check('data.duplicates').detail, /none possible/);
  });

  it('half-built by hand (ON ONLY parent, 2 of 4 attached, one built but not attached, one INVALID): named per partition, not "a failed concurrent build"; the pasted remedy finishes it', async () => {
    // The fourth partition's name holds a newline: the pasted remedy must still name it.
    const odd = 'telegram_sessions\np3';
    await db.sql(partitionedTable('half', 'hash', { names: ['telegram_sessions_p0', 'telegram_sessions_p1', 'telegram_sessions_p2', odd] }));
    await rows('half', 400);
    await db.sql(`CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON ONLY half.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    for (const p of ['p0', 'p1', 'p2']) {
      await db.sql(`CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_${p}_uid ON half.telegram_sessions_${p} (user_id) WHERE user_id IS NOT NULL`);
    }
    await db.sql(`ALTER INDEX half.telegram_sessions_user_id_unique ATTACH PARTITION half.telegram_sessions_p0_uid`);
    await db.sql(`ALTER INDEX half.telegram_sessions_user_id_unique ATTACH PARTITION half.telegram_sessions_p1_uid`);
    // A failed concurrent build on the odd partition: a duplicate stops it and leaves an INVALID index.
    const oddRef = `half."telegram_sessions\np3"`;
    const dupUser = (await db.sql(`SELECT user_id FROM ${oddRef} LIMIT 1`)).rows[0].user_id as string;
    await db.sql(`INSERT INTO half.telegram_sessions (tenant_id, user_id) VALUES ('t', $1)`, [dupUser]);
    await assert.rejects(db.sql(`CREATE UNIQUE INDEX CONCURRENTLY p3_uid ON ${oddRef} (user_id) WHERE user_id IS NOT NULL`), (e: { code?: string }) => e.code === '23505');
    await db.sql(`DELETE FROM ${oddRef} WHERE ctid = (SELECT max(ctid) FROM ${oddRef} WHERE user_id = $1)`, [dupUser]);
    assert.deepEqual(await parentIndex('half', 'telegram_sessions_user_id_unique'), { valid: false, attached: 2 });

    const human = await runTsm(['doctor', '--schema', 'half', '-d', db.url]);
    const r = await doctor(db.url, ['--schema', 'half']);
    assert.equal(r.code, 1);
    const inv = r.check('index.invalid');
    assert.equal(inv.status, 'fail');
    assert.match(inv.detail, /^telegram_sessions_user_id_unique is a partitioned index that is not valid yet \(not a failed build\): 2 partitions of 4 lack an attached valid index/);
    assert.match(inv.detail, /telegram_sessions_p2: valid telegram_sessions_p2_uid not attached/);
    assert.match(inv.detail, /U&"telegram_sessions\\000ap3": INVALID p3_uid \(a failed concurrent build\)/);
    assert.doesNotMatch(inv.detail, /INVALID \(left by a failed concurrent build\): telegram_sessions_user_id_unique/);
    // No tsm history: `up` would run 0004, which finishes the index.
    assert.match(inv.remedy ?? '', /^tsm migrate up --schema half {3}\(finishes telegram_sessions_user_id_unique/);
    // Partitions in name order ("\n" sorts before "_").
    assert.deepEqual(remedySql(inv.remedy), [
      'DROP INDEX CONCURRENTLY IF EXISTS "half"."p3_uid";',
      'CREATE UNIQUE INDEX CONCURRENTLY p3_uid ON half.U&"telegram_sessions\\000ap3" USING btree (user_id) WHERE (user_id IS NOT NULL);',
      'ALTER INDEX "half"."telegram_sessions_user_id_unique" ATTACH PARTITION "half"."p3_uid";',
      'ALTER INDEX "half"."telegram_sessions_user_id_unique" ATTACH PARTITION "half"."telegram_sessions_p2_uid";',
    ]);
    const u = r.check('index.user-id-unique');
    assert.equal(u.status, 'fail');
    assert.match(u.detail, /telegram_sessions_user_id_unique is a partitioned index that is not valid yet/);
    assert.match(u.remedy ?? '', /see index\.invalid/);

    // Paste what the human output shows, line by line.
    const pasted = pastedRemedySql(human.stdout, 'index.invalid');
    assert.equal(pasted.length, 4, human.stdout);
    await runEach(pasted);
    assert.deepEqual(await parentIndex('half', 'telegram_sessions_user_id_unique'), { valid: true, attached: 4 });
    const after = await doctor(db.url, ['--schema', 'half']);
    assert.equal(after.check('index.invalid').status, 'ok');
    assert.equal(after.check('index.user-id-unique').status, 'ok');
    assert.equal(after.check('index.on-conflict').status, 'ok');
  });

  it('with 0004 recorded as applied, the remedy does not promise that migrate up rebuilds the index', async () => {
    await db.sql(partitionedTable('hist', 'hash', { partitions: 2 }));
    await db.sql(`CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON ONLY hist.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`CREATE TABLE hist.tsm_migrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamptz NOT NULL, checksum text)`);
    await db.sql(`INSERT INTO hist.tsm_migrations (name, run_on) VALUES ('0004_user_id_unique_index', now())`);
    const r = await doctor(db.url, ['--schema', 'hist']);
    const inv = r.check('index.invalid');
    assert.equal(inv.status, 'fail');
    assert.match(inv.remedy ?? '', /tsm migrate up --schema hist does not rebuild it: 0004_user_id_unique_index is recorded as applied/);
    assert.doesNotMatch(inv.remedy ?? '', /\(finishes/);
    const sql = remedySql(inv.remedy);
    assert.equal(sql.length, 4);
    await runEach(sql);
    assert.deepEqual(await parentIndex('hist', 'telegram_sessions_user_id_unique'), { valid: true, attached: 2 });
  });

  it('LIST (user_id) with a partition sub-partitioned by HASH (user_id): multi-level, the remedy builds every level', async () => {
    await db.sql(partitionedTable('lst', 'list'));
    await db.sql(`CREATE TABLE lst.telegram_sessions_sub PARTITION OF lst.telegram_sessions FOR VALUES IN ('9', '10', '11') PARTITION BY HASH (user_id);
      CREATE TABLE lst.telegram_sessions_sub_a PARTITION OF lst.telegram_sessions_sub FOR VALUES WITH (MODULUS 2, REMAINDER 0);
      CREATE TABLE lst.telegram_sessions_sub_b PARTITION OF lst.telegram_sessions_sub FOR VALUES WITH (MODULUS 2, REMAINDER 1);`);
    await db.sql(`INSERT INTO lst.telegram_sessions (tenant_id, user_id) SELECT 't', g::text FROM generate_series(1, 50) g`);
    const r = await doctor(db.url, ['--schema', 'lst']);
    assert.match(r.check('table').detail, /partitioned by LIST \(user_id\) into 3 partitions \(2 levels, 4 leaf partitions\)/);
    const u = r.check('index.user-id-unique');
    assert.equal(u.status, 'fail');
    const sql = remedySql(u.remedy);
    assert.ok(sql.some((s) => /^CREATE UNIQUE INDEX "telegram_sessions_sub_user_id_unique" ON ONLY "lst"\."telegram_sessions_sub"/.test(s)), sql.join('\n'));
    await runEach(sql);
    assert.deepEqual(await parentIndex('lst', 'telegram_sessions_user_id_unique'), { valid: true, attached: 3 });
    const after = await doctor(db.url, ['--schema', 'lst']);
    assert.equal(after.check('index.user-id-unique').status, 'ok');
    assert.equal(after.check('index.invalid').detail, '6 of 6 indexes valid (on the table and its 5 partitions)');
  });

  it('RANGE (created_at): a unique user_id is impossible; doctor says why and gives the options', async () => {
    await db.sql(partitionedTable('rng', 'range'));
    const r = await doctor(db.url, ['--schema', 'rng']);
    assert.equal(r.code, 1);
    const u = r.check('index.user-id-unique');
    assert.equal(u.status, 'fail');
    assert.match(u.detail, /^impossible here: telegram_sessions is partitioned by RANGE \(created_at\): a unique index on a partitioned table must contain every partition-key column/);
    assert.match(u.remedy ?? '', /re-partition by user_id/);
    assert.match(u.remedy ?? '', /unpartitioned lookup table user_id → session id/);
    assert.match(u.remedy ?? '', /tsm migrate up --schema rng refuses this table before changing anything/);
    assert.deepEqual(remedySql(u.remedy), ['CREATE TABLE "rng"."telegram_session_users" (user_id varchar(255) PRIMARY KEY, session_id uuid NOT NULL);']);
    assert.doesNotMatch(u.remedy ?? '', /CONCURRENTLY/, 'no index statement that cannot work');
    assert.equal(r.check('index.on-conflict').status, 'fail');
    assert.equal(r.check('index.on-conflict').remedy, u.remedy);
    // The remedy's DDL really is refused by PostgreSQL, which is what the detail says.
    await assert.rejects(db.sql('CREATE UNIQUE INDEX x ON rng.telegram_sessions (user_id)'), (e: { code?: string }) => e.code === '0A000');
  });

  it('a partition sub-partitioned by RANGE (created_at) under HASH (user_id): reported by name', async () => {
    await db.sql(`CREATE SCHEMA mixed;
      CREATE TABLE mixed.telegram_sessions (tenant_id varchar(255) NOT NULL, user_id varchar(255), session_string_enc text,
        key_id varchar(64), status varchar(20) NOT NULL DEFAULT 'pending', created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()) PARTITION BY HASH (user_id);
      CREATE TABLE mixed.p0 PARTITION OF mixed.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 0);
      CREATE TABLE mixed.p1 PARTITION OF mixed.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 1) PARTITION BY RANGE (created_at);
      CREATE TABLE mixed.p1_all PARTITION OF mixed.p1 DEFAULT;`);
    const r = await doctor(db.url, ['--schema', 'mixed']);
    const u = r.check('index.user-id-unique');
    assert.equal(u.status, 'fail');
    assert.match(u.detail, /^impossible here: its partition p1 is partitioned by RANGE \(created_at\)/);
  });

  it('data checks read every partition: duplicates and NULL user_ids, exact and estimated alike', async () => {
    await db.sql(partitionedTable('pdata', 'hash'));
    await rows('pdata', 300, 'u7');
    await db.sql(`INSERT INTO pdata.telegram_sessions (tenant_id, user_id) VALUES ('t', 'u8'), ('t', 'u8'), ('t', NULL), ('t', NULL), ('t', NULL)`);
    await db.sql('ANALYZE pdata.telegram_sessions');
    const exact = await doctor(db.url, ['--schema', 'pdata', '--exact']);
    assert.equal(exact.check('data.duplicates').status, 'fail');
    assert.match(exact.check('data.duplicates').detail, /^2 user_ids with more than one row \(5 rows\): "u8" ×3, "u7" ×2$/);
    assert.equal(exact.check('data.duplicates').exact, true);
    assert.match(exact.check('data.null-user-id').detail, /^3 rows with NULL user_id/);
    const est = await doctor(db.url, ['--schema', 'pdata', '--estimate']);
    assert.equal(est.check('data.null-user-id').exact, false);
    assert.match(est.check('data.null-user-id').detail, /^about 3 rows with NULL user_id .*estimated from planner statistics/);
    assert.equal(est.check('data.duplicates').status, 'warn', 'an estimate warns, never fails');
    assert.match(est.check('data.duplicates').detail, /^about 3 rows beyond one per user_id; most repeated: "u8" ≈×3, "u7" ≈×2/);
  });
});
