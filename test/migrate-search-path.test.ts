/**
 * The planted-operator attack (issue 8, finding 3). A role that may create objects in a schema on
 * the application's search_path (public, as before PostgreSQL 15) plants `=(varchar, varchar)`
 * there. 0005's function compares `t.tenant_id = EXCLUDED.tenant_id` with the caller's search_path
 * in force, so the planted operator runs as the application on the second save of a user (the
 * expected failure below proves the side effect is seen). 0006's function (SECURITY INVOKER,
 * search_path pinned to pg_catalog, pg_temp, OPERATOR(pg_catalog.=)) never runs it, through the
 * text version or the bigint overload; doctor warns about the first and not about the second.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestRole } from './helpers/db.js';
import { doctor } from './helpers/doctor.js';
import { preFixSchema } from './helpers/fixtures.js';
import { migrate, qi } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);
let app: TestRole;

async function connect(role: TestRole): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: role.url, application_name: 'tsm-test' });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** Two saves of one user (the second goes through ON CONFLICT … WHERE tenant = tenant) in a fresh app session; what the planted operator left. */
async function saveTwice(schema: string, user: string | number): Promise<string> {
  const c = await connect(app);
  try {
    const path = (await c.query('SHOW search_path')).rows[0].search_path as string;
    assert.match(path, /public/, 'the application role has public on its search_path (the default)');
    const arg = typeof user === 'number' ? String(user) : `'${user}'`;
    for (const session of ['first', 'second']) {
      await c.query(`SELECT ${qi(schema)}.upsert_telegram_session('t-1', ${arg}, '${session}', 'k1')`);
    }
    const ran = (await c.query(`SELECT coalesce(current_setting('planted.ran', true), '') AS ran`)).rows[0].ran as string;
    // (This check compares with pg_catalog's operator by name: a plain `=` here would run the planted one.)
    const row = (await c.query(
      `SELECT count(*)::int AS n, max(session_string_enc) AS s FROM ${qi(schema)}.telegram_sessions WHERE user_id::text OPERATOR(pg_catalog.=) $1::text`,
      [String(user)],
    )).rows[0];
    assert.deepEqual(row, { n: 1, s: 'second' }, 'the second save updated the row');
    return ran;
  } finally {
    await c.end();
  }
}

describe('a =(varchar, varchar) operator planted in public', () => {
  before(async () => {
    for (const [schema, n] of [['sp_old', '5'], ['sp_new', '6']] as const) {
      await db.sql(preFixSchema(schema));
      const r = await migrate(db.url, ['up', n, '--schema', schema]);
      assert.equal(r.code, 0, r.stderr);
    }
    app = await db.role('tsm_sp_app');
    const mallory = await db.role('tsm_sp_mallory');
    for (const schema of ['sp_old', 'sp_new']) {
      await db.sql(`GRANT USAGE ON SCHEMA ${schema} TO ${qi(app.name)}; GRANT SELECT, INSERT, UPDATE ON ${schema}.telegram_sessions TO ${qi(app.name)}`);
    }
    // Before PostgreSQL 15 every role could create in public; here it is granted explicitly.
    await db.sql(`GRANT CREATE ON SCHEMA public TO ${qi(mallory.name)}`);
    const m = await connect(mallory);
    try {
      await m.query(`CREATE FUNCTION public.planted_eq(a varchar, b varchar) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_catalog.set_config('planted.ran', current_user, false);
          RETURN a::text OPERATOR(pg_catalog.=) b::text;
        END $$`);
      await m.query(`CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.planted_eq)`);
    } finally {
      await m.end();
    }
  });

  it("0005's function runs the planted operator as the application (expected failure: the side effect is visible)", async () => {
    assert.equal(await saveTwice('sp_old', 'victim-1'), app.name);
  });

  it("0006's function never runs it: text user id", async () => {
    assert.equal(await saveTwice('sp_new', 'user-1'), '');
  });

  it("0006's bigint overload never runs it: integer user id", async () => {
    assert.equal(await saveTwice('sp_new', 424242), '');
  });

  it('doctor: function.upsert warns on 0005\'s function (search_path not pinned), ok on 0006\'s', async () => {
    const old = await doctor(db.url, ['--schema', 'sp_old']);
    assert.equal(old.check('function.upsert').status, 'warn');
    assert.match(old.check('function.upsert').detail, /^search_path not pinned/);
    assert.match(old.check('function.upsert').remedy ?? '', /tsm migrate up --schema sp_old/);
    assert.match(old.check('function.upsert').remedy ?? '', /ALTER FUNCTION sp_old\.upsert_telegram_session\(.*\) SECURITY INVOKER SET search_path = pg_catalog, pg_temp;/);
    const hardened = await doctor(db.url, ['--schema', 'sp_new']);
    assert.equal(hardened.check('function.upsert').status, 'ok', hardened.check('function.upsert').detail);
  });

  it('doctor: SECURITY DEFINER warns', async () => {
    await db.sql(preFixSchema('sp_definer'));
    assert.equal((await migrate(db.url, ['up', '--schema', 'sp_definer'])).code, 0);
    await db.sql(`ALTER FUNCTION sp_definer.upsert_telegram_session(varchar, varchar, text, varchar, varchar, text, text) SECURITY DEFINER`);
    const r = await doctor(db.url, ['--schema', 'sp_definer']);
    assert.equal(r.check('function.upsert').status, 'warn');
    assert.match(r.check('function.upsert').detail, /SECURITY DEFINER/);
  });
});
