/**
 * tsm doctor against schema states built by hand with SQL (issue 2, tests 1–4, 6, 7): each state
 * lives in its own schema of this file's database, so the tests are independent.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { allOkExcept, doctor } from './helpers/doctor.js';
import { fixedSchema, incidentRacyFunction, preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

describe('tsm doctor: schema states', () => {
  it('1. empty database: table fails, the checks that need it are skipped, exit 1', async () => {
    const r = await doctor(db.url);
    assert.equal(r.code, 1);
    assert.deepEqual(r.statuses, {
      connection: 'ok',
      table: 'fail',
      'columns.required': 'skipped',
      'columns.session-types': 'skipped',
      'columns.diagnostics': 'skipped',
      'index.user-id-unique': 'skipped',
      'index.invalid': 'skipped',
      'index.on-conflict': 'skipped',
      'data.duplicates': 'skipped',
      'data.null-user-id': 'skipped',
      'function.upsert': 'skipped',
      privileges: 'skipped',
      migrations: 'skipped',
      'server.writable': 'ok',
    });
    assert.deepEqual(r.report.summary, { ok: 2, warn: 0, fail: 1, skipped: 11 });
    assert.match(r.check('table').detail, /public\.telegram_sessions does not exist/);
    assert.match(r.check('table').remedy ?? '', /^tsm migrate up/);
    assert.equal(r.check('columns.required').remedy, null, 'skipped checks have no remedy');
    assert.equal(r.report.schema, 'public');
    assert.match(r.report.server_version, /^\d+(\.\d+)?/);
    assert.equal(r.report.database, db.url.replace(/:[^:@/]+@/, ':***@'), 'the masked URL');
    assert.ok(!r.stdout.includes(new URL(db.url).password || '\u0000'), 'no password in the output');
  });

  it('a schema that does not exist: table fails and says so', async () => {
    const r = await doctor(db.url, ['--schema', 'no_such_schema']);
    assert.equal(r.code, 1);
    assert.equal(r.check('table').status, 'fail');
    assert.match(r.check('table').detail, /schema no_such_schema does not exist/);
    assert.match(r.check('table').remedy ?? '', /tsm migrate up --schema no_such_schema/);
  });

  it('a table without user_id: columns.required fails, the checks that need user_id are skipped; a view is no table', async () => {
    await db.sql(`CREATE SCHEMA nouid; CREATE TABLE nouid.telegram_sessions (id serial PRIMARY KEY, tenant_id text,
      session_string_enc text, key_id text, status text, updated_at timestamptz, auth_error text, error_details text)`);
    const r = await doctor(db.url, ['--schema', 'nouid']);
    assert.equal(r.code, 1);
    assert.equal(r.check('columns.required').detail, 'missing: user_id');
    assert.match(r.check('columns.required').remedy ?? '', /ALTER TABLE "nouid"\."telegram_sessions" ADD COLUMN user_id varchar\(255\);/);
    for (const id of ['index.user-id-unique', 'index.on-conflict', 'data.duplicates', 'data.null-user-id']) {
      assert.equal(r.check(id).status, 'skipped', id);
      assert.match(r.check(id).detail, /needs the user_id column/);
    }
    assert.equal(r.check('index.invalid').status, 'ok');

    await db.sql(`CREATE SCHEMA isview; CREATE VIEW isview.telegram_sessions AS SELECT 1 AS user_id`);
    const v = await doctor(db.url, ['--schema', 'isview']);
    assert.equal(v.check('table').status, 'fail');
    assert.equal(v.check('table').detail, 'isview.telegram_sessions is a view, not a table');
    assert.equal(v.check('columns.required').status, 'skipped');
  });

  it('2. the pre-fix schema: exactly the index, on-conflict, diagnostics and function checks fail', async () => {
    await db.sql(preFixSchema('prefix'));
    const r = await doctor(db.url, ['--schema', 'prefix']);
    assert.equal(r.code, 1);
    assert.deepEqual(
      r.statuses,
      allOkExcept({
        'columns.diagnostics': 'fail',
        'index.user-id-unique': 'fail',
        'index.on-conflict': 'fail',
        'function.upsert': 'fail',
        migrations: 'skipped',
      }),
    );
    assert.match(r.check('index.on-conflict').detail, /42P10/);
    assert.match(r.check('columns.diagnostics').detail, /auth_error, error_details/);
    assert.match(r.check('function.upsert').detail, /does not exist/);
    assert.match(r.check('index.user-id-unique').remedy ?? '', /tsm migrate up --schema prefix/);
    assert.match(r.check('index.user-id-unique').remedy ?? '', /CREATE UNIQUE INDEX CONCURRENTLY .* ON "prefix"\."telegram_sessions" \(user_id\) WHERE user_id IS NOT NULL;/);
    // Every problem has a remedy, nothing else has one.
    for (const c of r.report.checks) assert.equal(c.remedy !== null, c.status === 'fail' || c.status === 'warn', c.id);
  });

  it('3. session_string_enc varchar(255): columns.session-types fails naming the column and its limit', async () => {
    await db.sql(fixedSchema('narrow').replace('session_string_enc text', 'session_string_enc varchar(255)'));
    const r = await doctor(db.url, ['--schema', 'narrow']);
    assert.equal(r.code, 1);
    assert.deepEqual(r.statuses, allOkExcept({ 'columns.session-types': 'fail', migrations: 'skipped' }));
    const c = r.check('columns.session-types');
    assert.match(c.detail, /session_string_enc is character varying\(255\): holds at most 255 characters/);
    assert.match(c.detail, /at least 4096/);
    assert.match(c.remedy ?? '', /ALTER TABLE "narrow"\."telegram_sessions" ALTER COLUMN "session_string_enc" TYPE text;/);

    // --min-session-length moves the bar.
    const lenient = await doctor(db.url, ['--schema', 'narrow', '--min-session-length', '255']);
    assert.equal(lenient.code, 0);
    assert.equal(lenient.check('columns.session-types').status, 'ok');
    const strict = await doctor(db.url, ['--schema', 'narrow', '--min-session-length', '256']);
    assert.equal(strict.code, 1);
    assert.equal(strict.check('columns.session-types').status, 'fail');
  });

  it('a varchar session column through a domain counts too; text passes', async () => {
    await db.sql(`CREATE SCHEMA dom; CREATE DOMAIN dom.short_text AS varchar(100);
      CREATE TABLE dom.telegram_sessions (tenant_id varchar(255), user_id varchar(255), session_string_enc text,
        key_id varchar(64), status varchar(20), updated_at timestamptz, telethon_session dom.short_text)`);
    const r = await doctor(db.url, ['--schema', 'dom']);
    const c = r.check('columns.session-types');
    assert.equal(c.status, 'fail');
    assert.match(c.detail, /telethon_session is dom\.short_text: holds at most 100 characters/);
    assert.doesNotMatch(c.detail, /session_string_enc/);
  });

  it('4. duplicates for two user_ids: data.duplicates fails and lists them', async () => {
    await db.sql(preFixSchema('dups'));
    await db.sql(`INSERT INTO dups.telegram_sessions (tenant_id, user_id) VALUES
      ('t', 'u1'), ('t', 'u1'), ('t', 'u1'), ('t', 'u2'), ('t', 'u2'), ('t', 'u3'), ('t', NULL), ('t', NULL)`);
    const r = await doctor(db.url, ['--schema', 'dups']);
    assert.equal(r.code, 1);
    const c = r.check('data.duplicates');
    assert.equal(c.status, 'fail');
    assert.match(c.detail, /^2 user_ids with more than one row \(5 rows\): "u1" ×3, "u2" ×2$/);
    assert.match(c.remedy ?? '', /tsm dedupe --dry-run --schema dups/);
    assert.match(c.remedy ?? '', /tsm dedupe --schema dups/);
    const nulls = r.check('data.null-user-id');
    assert.equal(nulls.status, 'warn');
    assert.match(nulls.detail, /^2 rows with NULL user_id/);
    // Doctor looked, and wrote nothing.
    assert.equal((await db.sql('SELECT count(*)::int AS n FROM dups.telegram_sessions')).rows[0].n, 8);
  });

  it('6. an equivalent unique index under another name, or a UNIQUE constraint: index.user-id-unique ok', async () => {
    await db.sql(fixedSchema('renamed').replace('CREATE UNIQUE INDEX telegram_sessions_user_id_unique', 'CREATE UNIQUE INDEX tg_uid_any_name'));
    const r = await doctor(db.url, ['--schema', 'renamed']);
    assert.equal(r.code, 0);
    assert.deepEqual(r.statuses, allOkExcept({ migrations: 'skipped' }));
    assert.match(r.check('index.user-id-unique').detail, /^tg_uid_any_name: unique on \(user_id\) WHERE \(user_id IS NOT NULL\)$/);
    assert.match(r.check('index.on-conflict').detail, /arbiter index: tg_uid_any_name/);

    const noPartial = fixedSchema('constr').replace(
      /CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON [^;]+;/,
      'ALTER TABLE constr.telegram_sessions ADD CONSTRAINT tg_user_key UNIQUE (user_id);',
    );
    await db.sql(noPartial);
    const c = await doctor(db.url, ['--schema', 'constr']);
    assert.equal(c.code, 0);
    assert.match(c.check('index.user-id-unique').detail, /^tg_user_key: unique on \(user_id\)$/);
    assert.equal(c.check('index.on-conflict').status, 'ok');
  });

  it('7. the incident\'s UPDATE-then-INSERT function: function.upsert warns "racy"; --fail-on warn makes it exit 1', async () => {
    await db.sql(fixedSchema('racy'));
    await db.sql(incidentRacyFunction('racy'));
    const r = await doctor(db.url, ['--schema', 'racy']);
    assert.equal(r.code, 0, 'a warning alone does not fail by default');
    assert.deepEqual(r.statuses, allOkExcept({ 'function.upsert': 'warn', migrations: 'skipped' }));
    const c = r.check('function.upsert');
    assert.match(c.detail, /\bracy\b/);
    assert.equal(c.severity, 'fail');
    assert.match(c.remedy ?? '', /tsm migrate up --schema racy/);
    assert.deepEqual(r.report.summary, { ok: 12, warn: 1, fail: 0, skipped: 1 });

    const strict = await doctor(db.url, ['--schema', 'racy', '--fail-on', 'warn']);
    assert.equal(strict.code, 1);
    assert.equal(strict.check('function.upsert').status, 'warn');
  });

  it('function.upsert: another signature or return type fails; an ON CONFLICT body without a tenant guard warns', async () => {
    await db.sql(fixedSchema('sig').replace(/CREATE OR REPLACE FUNCTION[\s\S]*$/, ''));
    await db.sql(`CREATE FUNCTION sig.upsert_telegram_session(p_user_id text, p_session text) RETURNS uuid
      LANGUAGE sql AS $$ SELECT gen_random_uuid() $$`);
    const r = await doctor(db.url, ['--schema', 'sig']);
    assert.equal(r.check('function.upsert').status, 'fail');
    assert.match(r.check('function.upsert').detail, /found sig\.upsert_telegram_session\(text,text\)/);

    await db.sql(fixedSchema('noguard').replace('WHERE t.tenant_id = EXCLUDED.tenant_id', '').replace(/IF v_id IS NULL THEN[\s\S]*?END IF;/, ''));
    const g = await doctor(db.url, ['--schema', 'noguard']);
    assert.equal(g.check('function.upsert').status, 'warn');
    assert.match(g.check('function.upsert').detail, /another tenant/);
  });
});
