/**
 * tsm migrate up --dry-run (issue 3): prints, per pending migration, the SQL it would run, and
 * changes nothing at all: pg_catalog is the same before and after, no schema, no tsm_migrations
 * table, and no lock (it runs while another tsm migrate holds the lock).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lockKey } from '../src/migrate/lock.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, catalogSnapshot, history, migrate, seed } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);

describe('tsm migrate up --dry-run', () => {
  it('the pre-fix schema: the SQL of every migration, pg_catalog unchanged', async () => {
    await db.sql(preFixSchema('public'));
    await seed(db, 'public', 100, 0);
    const before = await catalogSnapshot(db);
    const r = await migrate(db.url, ['up', '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const out = r.stdout;
    assert.match(out, /^-- tsm migrate up --dry-run {2}postgres:\/\/\S+ {2}· {2}schema public\n-- nothing below has been run: no lock taken, nothing created or changed\n/);
    assert.match(
      out,
      /-- setup\nBEGIN;\nSET LOCAL lock_timeout = '500ms';\nSET LOCAL statement_timeout = 0;\nSET LOCAL idle_in_transaction_session_timeout = 0;\nSELECT pg_catalog\.pg_backend_pid\(\) AS pid; {3}-- tsm checks that this is the backend holding its migration lock\nCREATE TABLE IF NOT EXISTS "public"\."tsm_migrations" \(/,
    );
    for (const name of SHIPPED) assert.match(out, new RegExp(`^-- ${name} \\(`, 'm'));
    assert.match(out, /-- public\.telegram_sessions exists: left as it is/);
    assert.match(out, /ALTER TABLE "public"\.telegram_sessions ADD COLUMN IF NOT EXISTS auth_error text, ADD COLUMN IF NOT EXISTS error_details text;/);
    assert.match(
      out,
      /-- 0004_user_id_unique_index \(no transaction: each statement alone\)\nBEGIN;\nSET lock_timeout = '500ms';\nSET statement_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\nSELECT pg_catalog\.pg_backend_pid\(\) AS pid;.*\nCOMMIT;\nSELECT pg_catalog\.pg_backend_pid\(\) AS pid;.*\nSET lock_timeout = '120000ms';\nCREATE UNIQUE INDEX CONCURRENTLY "telegram_sessions_user_id_unique" ON "public"\.telegram_sessions \(user_id\) WHERE user_id IS NOT NULL;\nSET lock_timeout = '500ms';\nBEGIN;\n(SET LOCAL .*\n){3}SELECT pg_catalog\.pg_backend_pid\(\) AS pid;.*\nINSERT INTO "public"\."tsm_migrations".*\nCOMMIT;\nRESET lock_timeout;\nRESET statement_timeout;\nRESET idle_in_transaction_session_timeout;\n/,
    );
    assert.match(out, /CREATE OR REPLACE FUNCTION "public"\.upsert_telegram_session\(/);
    assert.match(out, /ON CONFLICT \(user_id\) WHERE user_id IS NOT NULL DO UPDATE/);
    assert.deepEqual(await catalogSnapshot(db), before, 'pg_catalog unchanged');
    assert.deepEqual(await history(db), []);
  });

  it('--json: one document; a schema that does not exist is not created', async () => {
    const before = await catalogSnapshot(db);
    const r = await migrate(db.url, ['up', '--dry-run', '--json', '--schema', 'not_yet']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json();
    assert.equal(j.dry_run, true);
    assert.equal(j.schema, 'not_yet');
    assert.equal(j.refusal, null);
    assert.equal(j.setup[0], 'BEGIN;');
    assert.ok(j.setup.includes('CREATE SCHEMA IF NOT EXISTS "not_yet";'), j.setup.join('\n'));
    assert.equal(j.pooling, 'direct');
    assert.equal(j.read_only, false);
    assert.deepEqual(j.migrations.map((m: { name: string }) => m.name), SHIPPED);
    assert.deepEqual(j.migrations.map((m: { transaction: boolean }) => m.transaction), [true, true, true, false, true, true]);
    assert.match(j.migrations[0].sql.join('\n'), /CREATE TABLE IF NOT EXISTS "not_yet"\.telegram_sessions/);
    assert.deepEqual(await catalogSnapshot(db), before);
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'not_yet'`)).rows[0].n, 0);
  });

  it('takes no lock: it answers while another tsm migrate holds the lock', async () => {
    const holder = await db.client();
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [lockKey('public')]);
    const started = Date.now();
    const r = await migrate(db.url, ['up', '--dry-run', '--lock-wait', '1ms']);
    assert.equal(r.code, 0, r.stderr);
    // Exit 0 under --lock-wait 1ms already proves no lock was awaited; this only bounds a hang.
    assert.ok(Date.now() - started < 30_000);
    assert.match(r.stdout, /CREATE UNIQUE INDEX CONCURRENTLY/);
    await holder.query('SELECT pg_advisory_unlock_all()');
  });

  it('duplicates: shows that up would stop, and why; exit 0; nothing changed', async () => {
    await db.sql(preFixSchema('dups'));
    await seed(db, 'dups', 10, 2);
    const before = await catalogSnapshot(db);
    const r = await migrate(db.url, ['up', '--dry-run', '--schema', 'dups']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /-- up would refuse before applying anything: 0004_user_id_unique_index: 2 user_ids have more than one row/);
    assert.match(r.stdout, /-- 0004_user_id_unique_index\n-- would stop here: 2 user_ids have more than one row .*run `tsm dedupe --schema dups`/);
    assert.deepEqual(await catalogSnapshot(db), before);
  });

  it('after up: up to date, nothing to print; N limits the plan', async () => {
    assert.equal((await migrate(db.url, ['up', '2', '--schema', 'partial'])).code, 0);
    const r = await migrate(db.url, ['up', '2', '--dry-run', '--json', '--schema', 'partial']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.json().migrations.map((m: { name: string }) => m.name), SHIPPED.slice(2, 4));
    assert.deepEqual(r.json().setup, [], 'the schema and history table exist already');
    assert.equal((await migrate(db.url, ['up', '--schema', 'partial'])).code, 0);
    const done = await migrate(db.url, ['up', '--dry-run', '--schema', 'partial']);
    assert.match(done.stdout, /-- up to date: nothing pending \(6 migrations applied\)\n$/);
  });
});
