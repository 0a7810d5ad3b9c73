/**
 * tsm doctor and the unique index (issue 2, test 5 and around it): an INVALID leftover of a failed
 * CREATE UNIQUE INDEX CONCURRENTLY, a build still in progress, near misses, and the planner probe.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { doctor } from './helpers/doctor.js';
import { fixedFunction, fixedSchema, preFixSchema } from './helpers/fixtures.js';
import { outcome, settle, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

describe('tsm doctor: indexes', () => {
  it('5. an INVALID unique index left by a failed CREATE UNIQUE INDEX CONCURRENTLY: index.invalid fails', async () => {
    await db.sql(preFixSchema('inv'));
    await db.sql(`ALTER TABLE inv.telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text`);
    await db.sql(fixedFunction('inv'));
    await db.sql(`INSERT INTO inv.telegram_sessions (tenant_id, user_id) VALUES ('t', 'dup'), ('t', 'dup'), ('t', 'solo')`);
    // Sent alone (CONCURRENTLY cannot run in a transaction); fails on the duplicate and leaves the index behind.
    await assert.rejects(
      db.sql('CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_user_id_unique ON inv.telegram_sessions (user_id) WHERE user_id IS NOT NULL'),
      (err: { code?: string }) => err.code === '23505',
    );
    const flags = await db.sql(`SELECT indisvalid FROM pg_index WHERE indexrelid = 'inv.telegram_sessions_user_id_unique'::regclass`);
    assert.equal(flags.rows[0].indisvalid, false, 'the precondition: an INVALID index exists');

    const r = await doctor(db.url, ['--schema', 'inv']);
    assert.equal(r.code, 1);
    const inv = r.check('index.invalid');
    assert.equal(inv.status, 'fail');
    assert.match(inv.detail, /INVALID .*: telegram_sessions_user_id_unique$/);
    assert.match(inv.remedy ?? '', /DROP INDEX CONCURRENTLY IF EXISTS "inv"\."telegram_sessions_user_id_unique";/);
    assert.match(inv.remedy ?? '', /tsm dedupe --schema inv/);
    assert.match(inv.remedy ?? '', /tsm migrate up --schema inv/);
    // An INVALID index is no arbiter: the other index checks fail too, and say why.
    assert.equal(r.check('index.user-id-unique').status, 'fail');
    assert.match(r.check('index.user-id-unique').detail, /telegram_sessions_user_id_unique is INVALID/);
    assert.equal(r.check('index.on-conflict').status, 'fail');
    assert.match(r.check('index.on-conflict').detail, /42P10/);
    assert.equal(r.check('data.duplicates').status, 'fail');
    assert.match(r.check('data.duplicates').detail, /"dup" ×2/);
  });

  it('a CREATE INDEX CONCURRENTLY still in progress is not reported as invalid', async () => {
    await db.sql(fixedSchema('building'));
    const writer = await db.client();
    const builder = await db.client();
    // An open write transaction makes the concurrent build wait, with its index not yet valid.
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO building.telegram_sessions (tenant_id, user_id) VALUES ('t', 'w1')`);
    const build = settle(builder.query('CREATE INDEX CONCURRENTLY tg_key_id_idx ON building.telegram_sessions (key_id)'));
    try {
      await waitFor('the build in pg_stat_progress_create_index', async () =>
        (await db.sql(`SELECT 1 FROM pg_stat_progress_create_index WHERE index_relid = to_regclass('building.tg_key_id_idx')`)).rowCount === 1,
      );
      const during = await doctor(db.url, ['--schema', 'building']);
      const inv = during.check('index.invalid');
      assert.equal(inv.status, 'ok');
      assert.match(inv.detail, /build in progress \(not counted\): tg_key_id_idx/);
      assert.equal(during.code, 0);
    } finally {
      await writer.query('ROLLBACK');
      await outcome(build);
    }
    const after = await doctor(db.url, ['--schema', 'building']);
    assert.equal(after.check('index.invalid').status, 'ok');
    assert.equal(after.check('index.invalid').detail, '3 of 3 indexes valid');
  });

  it('near misses: composite, non-unique, other predicate and deferrable indexes are named and do not count', async () => {
    await db.sql(preFixSchema('near'));
    await db.sql(`
      CREATE UNIQUE INDEX tg_tenant_user ON near.telegram_sessions (tenant_id, user_id);
      CREATE INDEX tg_user_plain ON near.telegram_sessions (user_id);
      CREATE UNIQUE INDEX tg_user_active ON near.telegram_sessions (user_id) WHERE status = 'active';
      ALTER TABLE near.telegram_sessions ADD CONSTRAINT tg_user_deferred UNIQUE (user_id) DEFERRABLE INITIALLY DEFERRED;`);
    const r = await doctor(db.url, ['--schema', 'near']);
    const c = r.check('index.user-id-unique');
    assert.equal(c.status, 'fail');
    assert.match(c.detail, /^no unique index on \(user_id\)/);
    assert.match(c.detail, /tg_tenant_user is unique on \(tenant_id, user_id\), not \(user_id\) alone/);
    assert.match(c.detail, /tg_user_plain is not unique/);
    assert.match(c.detail, /tg_user_active is partial WHERE \(\(status\)::text = 'active'::text\)/);
    assert.match(c.detail, /tg_user_deferred is DEFERRABLE/);
    // The planner picks the deferrable one as arbiter (EXPLAIN succeeds) but execution refuses it.
    assert.equal(r.check('index.on-conflict').status, 'fail');
    assert.match(r.check('index.on-conflict').detail, /arbiter tg_user_deferred, which is DEFERRABLE/);
    assert.match(r.check('index.on-conflict').remedy ?? '', /ALTER TABLE "near"\."telegram_sessions" DROP CONSTRAINT "tg_user_deferred";/);
    const client = await db.client();
    await assert.rejects(
      client.query(`INSERT INTO near.telegram_sessions (tenant_id, user_id) VALUES ('t', 'x')
        ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE SET user_id = EXCLUDED.user_id`),
      /does not support deferrable/,
    );
    assert.equal(r.check('index.invalid').status, 'ok');
  });

  it('index.on-conflict plans without writing: the table is unchanged and no sequence moved', async () => {
    await db.sql(fixedSchema('probe'));
    await db.sql(`ALTER TABLE probe.telegram_sessions ADD COLUMN n serial`);
    await db.sql(`INSERT INTO probe.telegram_sessions (tenant_id, user_id) VALUES ('t', 'a')`);
    const before = await db.sql(`SELECT (SELECT count(*)::int FROM probe.telegram_sessions) AS rows,
      (SELECT last_value FROM probe.telegram_sessions_n_seq) AS seq`);
    const r = await doctor(db.url, ['--schema', 'probe']);
    assert.equal(r.check('index.on-conflict').status, 'ok');
    assert.match(r.check('index.on-conflict').detail, /arbiter index: telegram_sessions_user_id_unique/);
    const after = await db.sql(`SELECT (SELECT count(*)::int FROM probe.telegram_sessions) AS rows,
      (SELECT last_value FROM probe.telegram_sessions_n_seq) AS seq`);
    assert.deepEqual(after.rows[0], before.rows[0]);
  });
});
