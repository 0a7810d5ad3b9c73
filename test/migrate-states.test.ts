/**
 * tsm migrate up converges any earlier state to the design's schema (issue 3): an empty
 * database, the incident's pre-fix table, a schema partly fixed by hand, and a non-default
 * schema (`--schema tg`) end to end. Each state lives in its own schema; after `up`, tsm doctor
 * on that schema reports every check ok.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { ALL_IDS, doctor } from './helpers/doctor.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, indexesOf, migrate, rowsText, seed } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);

async function assertDoctorAllOk(schema: string): Promise<void> {
  const r = await doctor(db.url, ['--schema', schema]);
  const notOk = r.report.checks.filter((c) => c.status !== 'ok').map((c) => `${c.id}: ${c.status} (${c.detail})`);
  assert.deepEqual(notOk, [], `doctor --schema ${schema} is all ok`);
  assert.equal(r.code, 0);
  assert.equal(r.report.checks.length, ALL_IDS.length);
}

describe('tsm migrate up: from any earlier state to the fixed schema', () => {
  it('an empty database: the schema is created, every migration applied once, doctor all ok', async () => {
    const r = await migrate(db.url, ['up', '--schema', 'fresh', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json();
    assert.deepEqual(j.steps.map((s: { name: string }) => s.name), SHIPPED);
    assert.deepEqual(j.remaining, []);
    assert.equal(j.schema, 'fresh');
    assert.deepEqual(await history(db, 'fresh'), SHIPPED);
    const checksums = (await db.sql(`SELECT checksum FROM fresh.tsm_migrations`)).rows.map((x) => x.checksum);
    assert.ok(checksums.every((c) => /^[0-9a-f]{64}$/.test(c)), 'a SHA-256 recorded for each');
    const cols = (await db.sql(`SELECT column_name, data_type FROM information_schema.columns
       WHERE table_schema = 'fresh' AND table_name = 'telegram_sessions' ORDER BY ordinal_position`)).rows;
    assert.deepEqual(cols.map((c) => c.column_name), [
      'id', 'tenant_id', 'user_id', 'session_string_enc', 'key_id', 'status', 'auth_error', 'error_details', 'created_at', 'updated_at',
    ]);
    const idx = await indexesOf(db, 'fresh');
    const unique = idx.find((i) => i.name === 'telegram_sessions_user_id_unique');
    assert.ok(unique?.valid && unique.unique);
    assert.match(unique!.def, /\(user_id\) WHERE \(user_id IS NOT NULL\)$/);
    await assertDoctorAllOk('fresh');
    assert.match(r.stderr, /^tsm migrate: applying 0001_create_table$/m, 'progress goes to stderr');
  });

  it('a second up: up to date, nothing applied, exit 0; human output says so', async () => {
    const r = await migrate(db.url, ['up', '--schema', 'fresh']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ok: up to date, no migration pending/);
    assert.deepEqual(await history(db, 'fresh'), SHIPPED);
  });

  it("the incident's pre-fix table with rows: columns added, index built, function installed, rows unchanged", async () => {
    await db.sql(preFixSchema('prefix'));
    await seed(db, 'prefix', 500);
    const before = (await db.sql(`SELECT id, tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at
       FROM prefix.telegram_sessions ORDER BY id`)).rows;
    const r = await migrate(db.url, ['up', '--schema', 'prefix', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const notes = Object.fromEntries(r.json().steps.map((s: { name: string; notes: string[] }) => [s.name, s.notes.join(' | ')]));
    assert.match(notes['0001_create_table'], /prefix\.telegram_sessions exists: left as it is/);
    assert.match(notes['0002_widen_session_columns'], /nothing to widen/);
    const after = (await db.sql(`SELECT id, tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at
       FROM prefix.telegram_sessions ORDER BY id`)).rows;
    assert.deepEqual(after, before, 'the existing rows are untouched');
    await assertDoctorAllOk('prefix');
  });

  it('a schema partly fixed by hand: its index (another name) and columns are kept, a varchar session column is widened without a rewrite', async () => {
    await db.sql(`CREATE SCHEMA hand;
      CREATE TABLE hand.telegram_sessions (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id varchar(255) NOT NULL, user_id varchar(255),
        session_string_enc varchar(1000), key_id varchar(64), status varchar(20) NOT NULL DEFAULT 'pending',
        auth_error text, error_details text,
        created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
      CREATE UNIQUE INDEX hand_made_uid ON hand.telegram_sessions (user_id);`);
    await seed(db, 'hand', 200);
    const rowsBefore = await rowsText(db, 'hand');
    const fileBefore = (await db.sql(`SELECT pg_relation_filenode('hand.telegram_sessions') AS f`)).rows[0].f;
    const r = await migrate(db.url, ['up', '--schema', 'hand', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const notes = Object.fromEntries(r.json().steps.map((s: { name: string; notes: string[] }) => [s.name, s.notes.join(' | ')]));
    assert.match(notes['0002_widen_session_columns'], /widening session_string_enc \(character varying\(1000\)\) to text/);
    assert.match(notes['0003_diagnostic_columns'], /exist: nothing to add/);
    assert.match(notes['0004_user_id_unique_index'], /hand_made_uid is a valid unique index on \(user_id\): nothing to build/);
    assert.deepEqual((await indexesOf(db, 'hand')).map((i) => i.name), ['hand_made_uid', 'telegram_sessions_pkey'], 'no second unique index');
    const type = (await db.sql(`SELECT data_type FROM information_schema.columns WHERE table_schema = 'hand'
       AND table_name = 'telegram_sessions' AND column_name = 'session_string_enc'`)).rows[0].data_type;
    assert.equal(type, 'text');
    assert.equal((await db.sql(`SELECT pg_relation_filenode('hand.telegram_sessions') AS f`)).rows[0].f, fileBefore, 'no table rewrite');
    assert.deepEqual(await rowsText(db, 'hand'), rowsBefore);
    await assertDoctorAllOk('hand');
  });

  it('--schema tg end to end: only tg changes; status, the function and doctor work on tg', async () => {
    await db.sql(preFixSchema('tg'));
    await seed(db, 'tg', 50);
    const publicBefore = (await db.sql(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`)).rows[0].n;
    const dry = await migrate(db.url, ['up', '--dry-run', '--schema', 'tg']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /CREATE UNIQUE INDEX CONCURRENTLY "telegram_sessions_user_id_unique" ON "tg"\.telegram_sessions/);
    const r = await migrate(db.url, ['up', '--schema', 'tg']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^tsm migrate up {2}postgres:\/\/.* {2}· {2}schema tg$/m);
    assert.deepEqual(await history(db, 'tg'), SHIPPED);
    assert.deepEqual(await history(db, 'public'), [], 'no history in public');
    const publicAfter = (await db.sql(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`)).rows[0].n;
    assert.equal(publicAfter, publicBefore, 'nothing created in public');
    const st = await migrate(db.url, ['status', '--schema', 'tg', '--json']);
    assert.equal(st.code, 0, st.stderr);
    assert.deepEqual(st.json().migrations.map((m: { state: string }) => m.state), SHIPPED.map(() => 'applied'));
    // The function works from a session whose search_path does not include tg.
    const c = await db.client();
    await c.query(`SET search_path TO public`);
    const id1 = (await c.query(`SELECT tg.upsert_telegram_session('t-1', 'u-7', 'new', 'k2') AS id`)).rows[0].id;
    const row = (await c.query(`SELECT id, session_string_enc, key_id, status FROM tg.telegram_sessions WHERE user_id = 'u-7'`)).rows;
    assert.deepEqual(row, [{ id: id1, session_string_enc: 'new', key_id: 'k2', status: 'pending' }]);
    await assertDoctorAllOk('tg');
  });

  it('usage errors: a bad N or duration is exit 2 with one line, before connecting', async () => {
    for (const args of [['up', '0'], ['up', 'x'], ['down', '1.5'], ['up', '--lock-timeout', 'soon'], ['up', '--lock-wait', '-1s']]) {
      const r = await migrate('postgres://nobody@127.0.0.1:1/none', args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^tsm: .+\n$/);
      assert.equal(r.stdout, '');
    }
  });

  it('cannot connect: exit 3, one line', async () => {
    const r = await migrate('postgres://nobody@127.0.0.1:1/none', ['up']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^tsm: cannot connect to postgres:\/\/nobody@127\.0\.0\.1:1\/none: connection refused/);
  });
});
