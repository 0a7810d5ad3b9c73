/**
 * tsm dedupe on partitioned telegram_sessions (issue 11, design "Big tables"). Where user_id is the
 * partition key (HASH, LIST, and HASH under HASH), whose primary key must hold user_id, dedupe
 * identifies rows by (id, user_id), moves every duplicate whole into the archive with kept_id,
 * conserves every row, keeps the newest, and the unique index on user_id can be built after.
 * Where the partition key is something else (RANGE on created_at), it refuses with the reason and
 * changes nothing; a partitioned table without any unique key holding id is refused too.
 *
 * On the code before this test, every partitioned table was refused with "id is not unique".
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DedupeReport } from '../src/dedupe/engine.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { PRE_FIX_COLUMNS } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

const USERS = 1200;

/** Duplicates (1 to 3 extra rows per user, some ties on updated_at), single users; a copy of every row in <schema>.orig. */
function rows(schema: string): string {
  return `
INSERT INTO ${schema}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, created_at, updated_at)
SELECT 't', 'u-' || i, repeat(md5(i || '/' || j), 8), 'k-' || j, timestamptz '2024-01-01' + j * interval '1 minute',
       timestamptz '2024-06-01' + CASE WHEN i % 5 = 0 THEN 0 ELSE j END * interval '1 hour'
  FROM generate_series(1, ${USERS}) i, LATERAL generate_series(1, 2 + i % 3) j;
INSERT INTO ${schema}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id)
SELECT 't', 'single-' || g, 'x', 'k' FROM generate_series(1, 2000) g;
CREATE TABLE ${schema}.orig AS SELECT * FROM ${schema}.telegram_sessions;`;
}
const EXCESS = Array.from({ length: USERS }, (_, k) => 1 + ((k + 1) % 3)).reduce((a, b) => a + b, 0);

async function one<T = Record<string, unknown>>(sql: string): Promise<T> {
  return (await db.sql(sql)).rows[0] as T;
}

/** Every original row in exactly one place and unchanged; the newest per user kept; each archived row points at it. */
async function assertMovedWhole(schema: string): Promise<void> {
  const s = schema;
  const expected = `SELECT DISTINCT ON (user_id) user_id, id FROM ${s}.orig WHERE user_id LIKE 'u-%' ORDER BY user_id, updated_at DESC, created_at DESC, id DESC`;
  const r = await one(`SELECT
      (SELECT count(*) FROM ${s}.telegram_sessions_duplicates_archive)::int AS archived,
      (SELECT count(*) FROM ${s}.orig o WHERE (SELECT count(*) FROM ${s}.telegram_sessions t WHERE t.id = o.id AND t.user_id = o.user_id)
                                         + (SELECT count(*) FROM ${s}.telegram_sessions_duplicates_archive a WHERE a.id = o.id) <> 1)::int AS not_once,
      (SELECT count(*) FROM ${s}.orig o JOIN ${s}.telegram_sessions_duplicates_archive a USING (id)
        WHERE (o.tenant_id, o.user_id, o.session_string_enc, o.key_id, o.status, o.created_at, o.updated_at)
              IS DISTINCT FROM (a.tenant_id, a.user_id, a.session_string_enc, a.key_id, a.status, a.created_at, a.updated_at))::int AS changed,
      (SELECT count(*) FROM (${expected}) e WHERE NOT EXISTS (SELECT 1 FROM ${s}.telegram_sessions t WHERE t.id = e.id))::int AS newest_not_kept,
      (SELECT count(*) FROM ${s}.telegram_sessions_duplicates_archive a JOIN (${expected}) e USING (user_id) WHERE a.kept_id IS DISTINCT FROM e.id)::int AS wrong_kept_id,
      (SELECT count(*) FROM (SELECT user_id FROM ${s}.telegram_sessions WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) d)::int AS still_duplicated`);
  assert.deepEqual(r, { archived: EXCESS, not_once: 0, changed: 0, newest_not_kept: 0, wrong_kept_id: 0, still_duplicated: 0 });
  // The unique index on user_id can now be built (on the parent and every partition).
  await db.sql(`CREATE UNIQUE INDEX ${s}_user_id_check ON ${s}.telegram_sessions (user_id); DROP INDEX ${s}.${s}_user_id_check;`);
}

async function dedupeOk(schema: string, extra: string[] = []): Promise<DedupeReport> {
  const r = await runTsm(['dedupe', '-d', db.url, '--schema', schema, '--json', ...extra]);
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(0, 400));
  const j = r.json<DedupeReport>();
  assert.equal(j.archived, EXCESS);
  assert.equal(j.verification?.ok, true);
  assert.equal(j.conservation?.holds, true);
  assert.deepEqual(j.row_key, ['id', 'user_id']);
  return j;
}

describe('tsm dedupe on tables partitioned by user_id', () => {
  it('HASH (user_id), 4 partitions, primary key (id, user_id): every duplicate moved whole, the newest kept', async () => {
    await db.sql(`CREATE SCHEMA ph;
      CREATE TABLE ph.telegram_sessions (${PRE_FIX_COLUMNS}, PRIMARY KEY (id, user_id)) PARTITION BY HASH (user_id);
      ${[0, 1, 2, 3].map((r) => `CREATE TABLE ph.telegram_sessions_p${r} PARTITION OF ph.telegram_sessions FOR VALUES WITH (MODULUS 4, REMAINDER ${r});`).join('\n')}
      ${rows('ph')}`);
    const dry = await runTsm(['dedupe', '-d', db.url, '--schema', 'ph', '--dry-run', '--json']);
    assert.equal(dry.code, 1, dry.stderr);
    assert.equal(dry.json<DedupeReport>().would_move?.length, USERS);
    const j = await dedupeOk('ph', ['--batch-size', '100']);
    assert.equal(j.partition_key, 'HASH (user_id)');
    assert.ok(j.batches >= 4 * Math.floor(USERS / 4 / 100), `${j.batches} batches: each works inside one partition`);
    await assertMovedWhole('ph');
    const human = await runTsm(['dedupe', '-d', db.url, '--schema', 'ph']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /tsm dedupe: ph\.telegram_sessions \(partitioned by HASH \(user_id\)\)/);
  });

  it('LIST (user_id) with a DEFAULT partition, a unique index on (id, user_id) and NULL user_ids', async () => {
    await db.sql(`CREATE SCHEMA pl;
      CREATE TABLE pl.telegram_sessions (${PRE_FIX_COLUMNS}) PARTITION BY LIST (user_id);
      CREATE UNIQUE INDEX ON pl.telegram_sessions (id, user_id);
      CREATE TABLE pl.telegram_sessions_some PARTITION OF pl.telegram_sessions FOR VALUES IN ('u-1', 'u-2', 'u-3', 'single-1');
      CREATE TABLE pl.telegram_sessions_nulls PARTITION OF pl.telegram_sessions FOR VALUES IN (NULL);
      CREATE TABLE pl.telegram_sessions_rest PARTITION OF pl.telegram_sessions DEFAULT;
      ${rows('pl')}
      INSERT INTO pl.telegram_sessions (tenant_id, user_id) SELECT 't', NULL FROM generate_series(1, 30);`);
    const j = await dedupeOk('pl');
    assert.equal(j.partition_key, 'LIST (user_id)');
    assert.equal((await one<{ n: number }>(`SELECT count(*)::int AS n FROM pl.telegram_sessions WHERE user_id IS NULL`)).n, 30, 'NULL user_ids are not duplicates');
    await assertMovedWhole('pl');
  });

  it('HASH (user_id) partitions that are themselves partitioned by HASH (user_id)', async () => {
    await db.sql(`CREATE SCHEMA pm;
      CREATE TABLE pm.telegram_sessions (${PRE_FIX_COLUMNS}, PRIMARY KEY (id, user_id)) PARTITION BY HASH (user_id);
      CREATE TABLE pm.telegram_sessions_a PARTITION OF pm.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 0) PARTITION BY HASH (user_id);
      CREATE TABLE pm.telegram_sessions_a0 PARTITION OF pm.telegram_sessions_a FOR VALUES WITH (MODULUS 2, REMAINDER 0);
      CREATE TABLE pm.telegram_sessions_a1 PARTITION OF pm.telegram_sessions_a FOR VALUES WITH (MODULUS 2, REMAINDER 1);
      CREATE TABLE pm.telegram_sessions_b PARTITION OF pm.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 1);
      ${rows('pm')}`);
    await dedupeOk('pm');
    await assertMovedWhole('pm');
  });
});

describe('the row-by-row check on a partitioned table (key id, user_id)', () => {
  it('a row put back by a trigger is found by its whole key: exit 1', async () => {
    await db.sql(`CREATE SCHEMA pb;
      CREATE TABLE pb.telegram_sessions (${PRE_FIX_COLUMNS}, PRIMARY KEY (id, user_id)) PARTITION BY HASH (user_id);
      CREATE TABLE pb.telegram_sessions_0 PARTITION OF pb.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 0);
      CREATE TABLE pb.telegram_sessions_1 PARTITION OF pb.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 1);
      INSERT INTO pb.telegram_sessions (tenant_id, user_id, updated_at) SELECT 't', 'u-' || (g % 4), now() - g * interval '1 s' FROM generate_series(1, 12) g;
      CREATE FUNCTION pb.put_back() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        IF OLD.user_id = 'u-2' THEN INSERT INTO pb.telegram_sessions SELECT OLD.*; END IF; RETURN OLD; END $$;
      CREATE TRIGGER put_back AFTER DELETE ON pb.telegram_sessions FOR EACH ROW EXECUTE FUNCTION pb.put_back();`);
    const r = await runTsm(['dedupe', '-d', db.url, '--schema', 'pb', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const v = r.json<DedupeReport>().verification!;
    assert.equal(v.ok, false);
    assert.ok(v.in_table >= 2, JSON.stringify(v)); // (each pass moves them again: the trigger keeps putting them back)
  });
});

describe('tsm dedupe refuses where it cannot work', () => {
  it('RANGE (created_at): the reason and the options, exit 1, nothing created or changed', async () => {
    await db.sql(`CREATE SCHEMA pr;
      CREATE TABLE pr.telegram_sessions (${PRE_FIX_COLUMNS}, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
      CREATE TABLE pr.telegram_sessions_2024 PARTITION OF pr.telegram_sessions FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE TABLE pr.telegram_sessions_rest PARTITION OF pr.telegram_sessions DEFAULT;
      INSERT INTO pr.telegram_sessions (tenant_id, user_id, created_at) VALUES ('t', 'a', '2024-02-01'), ('t', 'a', '2023-02-01');`);
    const catalog = async () => (await db.sql(`SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pr' ORDER BY 1`)).rows;
    const before = await catalog();
    for (const args of [[], ['--dry-run']]) {
      const r = await runTsm(['dedupe', '-d', db.url, '--schema', 'pr', ...args]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        /^tsm: pr\.telegram_sessions is partitioned by RANGE \(created_at\): the rows of one user_id can sit in different partitions, so no unique index on user_id alone can exist there .*partition by user_id \(HASH or LIST\), or keep a separate unpartitioned user_id lookup table/,
      );
      assert.equal(r.stderr.split('\n').length, 2);
    }
    assert.deepEqual(await catalog(), before, 'nothing created');
    assert.equal((await one<{ n: number }>(`SELECT count(*)::int AS n FROM pr.telegram_sessions`)).n, 2);
  });

  it('partitioned by user_id without any unique key holding id: refused, nothing changed', async () => {
    await db.sql(`CREATE SCHEMA pn;
      CREATE TABLE pn.telegram_sessions (${PRE_FIX_COLUMNS}) PARTITION BY HASH (user_id);
      CREATE TABLE pn.telegram_sessions_0 PARTITION OF pn.telegram_sessions FOR VALUES WITH (MODULUS 1, REMAINDER 0);
      INSERT INTO pn.telegram_sessions (tenant_id, user_id) VALUES ('t', 'a'), ('t', 'a');`);
    const r = await runTsm(['dedupe', '-d', db.url, '--schema', 'pn']);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'tsm: pn.telegram_sessions has no unique key holding id (a primary key on id, or on (id, user_id) for a table partitioned by user_id): dedupe checks every row it moves by that key\n',
    );
    assert.equal((await one(`SELECT to_regclass('pn.telegram_sessions_duplicates_archive') AS r`)).r, null);
  });
});
