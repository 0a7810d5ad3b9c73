/**
 * The shipped migrations stay node-pg-migrate migrations: copied into a folder and run by plain
 * node-pg-migrate 9 (its own runner, no tsm), they work without tsm's context — up() declares the
 * context as a rest parameter, so `up.length` is 1 and node-pg-migrate does not take the callback
 * style; the schema is then current_schema() (node-pg-migrate's `schema` option sets the
 * search_path) and notes are simply dropped. Both directions.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);
const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

describe('the shipped migrations under plain node-pg-migrate', () => {
  it('up and down in schema plain, from the pre-fix table', async (t) => {
    const shippedDir = fileURLToPath(new URL('../migrations/', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'tsm-plain-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // As .mjs (ES modules wherever they are copied); the migration's name is the file name without it.
    for (const f of readdirSync(shippedDir).filter((f) => f.endsWith('.js'))) copyFileSync(join(shippedDir, f), join(dir, f.replace(/\.js$/, '.mjs')));

    await db.sql(preFixSchema('plain'));
    await db.sql(`INSERT INTO plain.telegram_sessions (tenant_id, user_id, session_string_enc) VALUES ('t-1', 'u-1', 's')`);
    const common = {
      databaseUrl: db.url,
      dir,
      migrationsTable: 'pgmigrations',
      schema: 'plain',
      singleTransaction: false,
      checkOrder: true,
      logger: quiet,
    } as const;
    const ran = await runner({ ...common, direction: 'up' });
    assert.deepEqual(ran.map((m) => m.name), SHIPPED);
    const fns = (await db.sql(`SELECT pg_get_function_identity_arguments(p.oid) AS args, p.proconfig FROM pg_proc p
       JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'plain' AND p.proname = 'upsert_telegram_session' ORDER BY 1`)).rows;
    assert.equal(fns.length, 2);
    assert.ok(fns.every((f) => JSON.stringify(f.proconfig) === JSON.stringify(['search_path=pg_catalog, pg_temp'])), JSON.stringify(fns));
    const unique = (await db.sql(`SELECT to_regclass('plain.telegram_sessions_user_id_unique') IS NOT NULL AS ok`)).rows[0].ok;
    assert.equal(unique, true);
    const publicTables = (await db.sql(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relname = 'telegram_sessions'`)).rows[0].n;
    assert.equal(publicTables, 0, 'nothing went to public');

    const back = await runner({ ...common, direction: 'down', count: SHIPPED.length - 1 });
    assert.deepEqual(back.map((m) => m.name), [...SHIPPED].reverse().slice(0, SHIPPED.length - 1));
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM plain.telegram_sessions`)).rows[0].n, 1, 'the row is still there');
  });
});
