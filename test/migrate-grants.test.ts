/**
 * Grants survive migration (issue 8, finding 2). An existing upsert_telegram_session owned by the
 * application role, with PUBLIC's EXECUTE revoked and EXECUTE granted to another role: after
 * `tsm migrate up` run by the superuser the owner is unchanged, the owner and the grantees can
 * call the function (and the bigint overload 0006 adds), and a role without a grant cannot.
 * Both paths: the in-place replacement (CREATE OR REPLACE) and the drop-and-recreate one (an
 * existing function with other parameter names), in 0005 and in 0006; in the latter, default
 * privileges of the migrating role must not widen the grants either.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestRole } from './helpers/db.js';
import { fixedFunction, preFixSchema } from './helpers/fixtures.js';
import { migrate, qi } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);
const TEXT = 'varchar, varchar, text, varchar, varchar, text, text';
const BIGINT = 'varchar, bigint, text, varchar, varchar, text, text';

interface Roles {
  app: TestRole;
  reader: TestRole;
  outsider: TestRole;
}

/** A schema at 0004 (table, columns, index), the three roles with table rights, and its function owned by app. */
async function setUp(schema: string, createFunction: string): Promise<Roles> {
  const s = qi(schema);
  await db.sql(preFixSchema(schema));
  const r = await migrate(db.url, ['up', '4', '--schema', schema]);
  assert.equal(r.code, 0, r.stderr);
  const roles = { app: await db.role('tsm_app'), reader: await db.role('tsm_reader'), outsider: await db.role('tsm_outsider') };
  for (const role of Object.values(roles)) {
    await db.sql(`GRANT USAGE ON SCHEMA ${s} TO ${qi(role.name)}; GRANT SELECT, INSERT, UPDATE ON ${s}.telegram_sessions TO ${qi(role.name)}`);
  }
  await db.sql(createFunction);
  const fn = `${s}.upsert_telegram_session(${TEXT})`;
  await db.sql(`ALTER FUNCTION ${fn} OWNER TO ${qi(roles.app.name)}`);
  await db.sql(`REVOKE EXECUTE ON FUNCTION ${fn} FROM PUBLIC`);
  await db.sql(`GRANT EXECUTE ON FUNCTION ${fn} TO ${qi(roles.reader.name)} WITH GRANT OPTION`);
  return roles;
}

async function fnState(schema: string, args: string): Promise<{ owner: string; grants: string[] } | null> {
  const r = await db.sql(
    `SELECT pg_get_userbyid(p.proowner) AS owner,
            array(SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END || ':' || x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END
                    FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x ORDER BY 1) AS grants
       FROM pg_proc p WHERE p.oid = to_regprocedure($1)`,
    [`${qi(schema)}.upsert_telegram_session(${args})`],
  );
  return (r.rows[0] as { owner: string; grants: string[] } | undefined) ?? null;
}

/** Calls the function as `role` (the user id as text, or as an integer for the overload); null or the SQLSTATE. */
async function callAs(role: TestRole, schema: string, user: string | number): Promise<string | null> {
  const c = new pg.Client({ connectionString: role.url, application_name: 'tsm-test' });
  c.on('error', () => {});
  await c.connect();
  try {
    const arg = typeof user === 'number' ? `${user}` : `'${user}'`;
    await c.query(`SELECT ${qi(schema)}.upsert_telegram_session('t-1', ${arg}, 's', 'k1')`);
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  } finally {
    await c.end();
  }
}

async function assertCallers(schema: string, roles: Roles, seed: number): Promise<void> {
  assert.equal(await callAs(roles.app, schema, `app-${seed}`), null, 'the owner calls the function');
  assert.equal(await callAs(roles.reader, schema, `reader-${seed}`), null, 'the grantee calls the function');
  assert.equal(await callAs(roles.outsider, schema, `outsider-${seed}`), '42501', 'a role without a grant cannot (PUBLIC stays revoked)');
  assert.equal(await callAs(roles.app, schema, 1000 + seed), null, 'the owner calls the bigint overload');
  assert.equal(await callAs(roles.reader, schema, 2000 + seed), null, 'the grantee calls the bigint overload');
  assert.equal(await callAs(roles.outsider, schema, 3000 + seed), '42501', 'a role without a grant cannot call the overload either');
}

describe('owner and EXECUTE grants survive migrate up', () => {
  it('replaced in place (0005, 0006): owner, grants and PUBLIC revoked kept; the bigint overload gets the same', async () => {
    const schema = 'g_inplace';
    const roles = await setUp(schema, fixedFunction(schema));
    const before = await fnState(schema, TEXT);
    assert.deepEqual(before, {
      owner: roles.app.name,
      grants: [`${roles.app.name}:EXECUTE`, `${roles.reader.name}:EXECUTE*`].sort(),
    });
    const r = await migrate(db.url, ['up', '--schema', schema, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await fnState(schema, TEXT), before, 'text version: same owner, same grants');
    assert.deepEqual(await fnState(schema, BIGINT), before, 'bigint overload: the text version\'s owner and grants');
    await assertCallers(schema, roles, 1);
  });

  it('0005 drops and recreates a function with other parameter names: owner, the owner\'s EXECUTE, grants and PUBLIC revoked are given back in the same transaction', async () => {
    const schema = 'g_recreate';
    const odd = `CREATE FUNCTION ${qi(schema)}.upsert_telegram_session(tenant varchar, uid varchar, sess text, kid varchar,
        st varchar DEFAULT 'pending', ae text DEFAULT NULL, ed text DEFAULT NULL) RETURNS uuid
      LANGUAGE sql AS $$ SELECT NULL::uuid $$`;
    const roles = await setUp(schema, odd);
    const before = await fnState(schema, TEXT);
    const dry = await migrate(db.url, ['up', '--dry-run', '--schema', schema, '--json']);
    const plan = dry.json().migrations.find((m: { name: string }) => m.name === '0005_upsert_function');
    assert.equal(plan.transaction, true);
    const sql: string[] = plan.sql;
    const at = (re: RegExp): number => sql.findIndex((x) => re.test(x));
    assert.ok(at(/^BEGIN;/) < at(/^DROP FUNCTION/) && at(/^DROP FUNCTION/) < at(/^CREATE OR REPLACE FUNCTION/), sql.join('\n'));
    assert.ok(at(/OWNER TO/) > at(/^CREATE OR REPLACE FUNCTION/) && at(/^COMMIT;/) > at(/^GRANT EXECUTE/), 'owner and grants inside the same transaction');

    const r = await migrate(db.url, ['up', '--schema', schema, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const note = r.json().steps.find((s: { name: string }) => s.name === '0005_upsert_function').notes[0];
    assert.match(note, new RegExp(`cannot be replaced in place .*dropping and recreating it; owner ${roles.app.name} and EXECUTE privileges kept`));
    assert.deepEqual(await fnState(schema, TEXT), before, 'same owner, same grants as before the drop');
    assert.deepEqual(await fnState(schema, BIGINT), before);
    await assertCallers(schema, roles, 2);
  });

  it('0006 drops and recreates a function changed after 0005; default privileges of the migrating role do not widen the grants', async () => {
    const schema = 'g_0006';
    const roles = await setUp(schema, fixedFunction(schema));
    assert.equal((await migrate(db.url, ['up', '1', '--schema', schema])).code, 0, 'applies 0005');
    // Someone changes the function in a way CREATE OR REPLACE cannot undo (parameter names), keeping owner and grants.
    const s = qi(schema);
    await db.sql(`DROP FUNCTION ${s}.upsert_telegram_session(${TEXT})`);
    await db.sql(`CREATE FUNCTION ${s}.upsert_telegram_session(tenant varchar, uid varchar, sess text, kid varchar,
        st varchar DEFAULT 'pending', ae text DEFAULT NULL, ed text DEFAULT NULL) RETURNS uuid
      LANGUAGE sql AS $$ SELECT NULL::uuid $$`);
    const fn = `${s}.upsert_telegram_session(${TEXT})`;
    await db.sql(`ALTER FUNCTION ${fn} OWNER TO ${qi(roles.app.name)}; REVOKE EXECUTE ON FUNCTION ${fn} FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION ${fn} TO ${qi(roles.reader.name)} WITH GRANT OPTION`);
    // The migrating role's default privileges would hand every new function in the schema to outsider.
    await db.sql(`ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT EXECUTE ON FUNCTIONS TO ${qi(roles.outsider.name)}`);
    try {
      const before = await fnState(schema, TEXT);
      const r = await migrate(db.url, ['up', '--schema', schema, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const notes: string[] = r.json().steps[0].notes;
      assert.match(notes.join(' | '), /cannot be replaced in place .*dropping and recreating it; owner/);
      assert.deepEqual(await fnState(schema, TEXT), before);
      assert.deepEqual(await fnState(schema, BIGINT), before);
      await assertCallers(schema, roles, 3);
    } finally {
      await db.sql(`ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} REVOKE EXECUTE ON FUNCTIONS FROM ${qi(roles.outsider.name)}`);
    }
  });

  it('a function with default privileges (never granted or revoked): PUBLIC keeps EXECUTE', async () => {
    const schema = 'g_default';
    await db.sql(preFixSchema(schema));
    const r = await migrate(db.url, ['up', '--schema', schema]);
    assert.equal(r.code, 0, r.stderr);
    const role = await db.role('tsm_anyone');
    await db.sql(`GRANT USAGE ON SCHEMA ${qi(schema)} TO ${qi(role.name)}; GRANT SELECT, INSERT, UPDATE ON ${qi(schema)}.telegram_sessions TO ${qi(role.name)}`);
    assert.equal(await callAs(role, schema, 'anyone'), null);
    assert.equal(await callAs(role, schema, 4242), null);
  });
});
