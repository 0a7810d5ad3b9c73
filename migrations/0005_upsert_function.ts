/**
 * 0005_upsert_function: upsert_telegram_session, race-free. One statement does the work:
 * INSERT … ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE … RETURNING id, so two
 * first saves for one user cannot both insert (the incident's UPDATE-then-INSERT body could).
 *   - same signature as the incident's function (varchar, varchar, text, varchar, varchar
 *     DEFAULT 'pending', text DEFAULT NULL, text DEFAULT NULL) RETURNS uuid;
 *   - a NULL p_user_id raises not_null_violation (23502): without a user id ON CONFLICT can never
 *     match, and every call would add a row;
 *   - a row of another tenant is never overwritten: the DO UPDATE has WHERE t.tenant_id =
 *     EXCLUDED.tenant_id, no row comes back, and the call fails with SQLSTATE TSM01, which tsm's
 *     classifier reports as tenant_mismatch;
 *   - the table is schema-qualified in the body, so it works whatever the caller's search_path.
 *     (0006 hardens the body: pinned search_path, qualified operators, integer user ids.)
 *
 * Privileges: CREATE OR REPLACE keeps the function's owner and grants. When an existing function
 * with this argument list cannot be replaced in place (another return type, other parameter
 * names, more defaults), it is dropped and created in the same transaction, and then given back
 * exactly what it had: its owner (ALTER FUNCTION … OWNER TO), the owner's own EXECUTE, PUBLIC's
 * EXECUTE (granted or revoked) and every other role's EXECUTE (with its grant option); grants
 * that default privileges would add to the new function are revoked. A role that could call the
 * function before can call it after, and no other.
 *
 * down: drops the function (no data is lost; a previous hand-written body is not restored).
 */
import type { MigrationBuilder } from 'node-pg-migrate';
import type { MigrationContext, ReadDb } from '../src/migrate/context.js';

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
/** A name for messages: as typed when plain, else quoted. */
const shown = (s: string): string => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : ident(s));
const ARGS = 'varchar, varchar, text, varchar, varchar, text, text';
const ARG_NAMES = ['p_tenant_id', 'p_user_id', 'p_session_string_enc', 'p_key_id', 'p_status', 'p_auth_error', 'p_error_details'];

/** `body` as a dollar-quoted literal whose tag occurs nowhere in it (names inside may hold `$`). */
function dollarQuote(body: string, tag: string): string {
  let t = tag;
  for (let i = 1; (body + `$${t}$`).indexOf(`$${t}$`) !== body.length; i++) t = `${tag}${i}`;
  return `$${t}$${body}$${t}$`;
}

/** The target schema: tsm's --schema; plain node-pg-migrate: the first schema of the search_path. */
async function targetSchema(db: ReadDb, ctx: MigrationContext | undefined): Promise<string> {
  if (ctx) return ctx.schema;
  const [row] = await db.select('SELECT pg_catalog.current_schema() AS s');
  if (typeof row?.s !== 'string') throw new Error('no target schema: the search_path names no existing schema');
  return row.s;
}

export function functionSql(schema: string): string {
  const s = ident(schema);
  const body = `
DECLARE v_id uuid;
BEGIN
  IF p_user_id IS NULL THEN
    RAISE EXCEPTION 'p_user_id must not be NULL' USING ERRCODE = 'not_null_violation';
  END IF;
  INSERT INTO ${s}.telegram_sessions AS t
    (tenant_id, user_id, session_string_enc, key_id, status, auth_error, error_details)
  VALUES (p_tenant_id, p_user_id, p_session_string_enc, p_key_id, COALESCE(p_status, 'pending'), p_auth_error, p_error_details)
  ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE
    SET session_string_enc = EXCLUDED.session_string_enc, key_id = EXCLUDED.key_id, status = EXCLUDED.status,
        auth_error = EXCLUDED.auth_error, error_details = EXCLUDED.error_details, updated_at = now()
    WHERE t.tenant_id = EXCLUDED.tenant_id
  RETURNING id INTO v_id;
  IF v_id IS NULL THEN
    RAISE EXCEPTION 'user_id % belongs to another tenant', p_user_id
      USING ERRCODE = 'TSM01', HINT = 'tenant_mismatch: the row of this user_id was not changed';
  END IF;
  RETURN v_id;
END
`;
  return `CREATE OR REPLACE FUNCTION ${s}.upsert_telegram_session(
  p_tenant_id varchar, p_user_id varchar, p_session_string_enc text, p_key_id varchar,
  p_status varchar DEFAULT 'pending', p_auth_error text DEFAULT NULL, p_error_details text DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql AS ${dollarQuote(body, 'fn')}`;
}

/** One EXECUTE grant: grantee null is PUBLIC. */
interface Grant {
  grantee: string | null;
  grantable: boolean;
}

interface Existing {
  result: string;
  arg_names: string[] | null;
  n_defaults: number;
  kind: string;
  owner: string;
  /** proacl IS NULL: the default privileges (owner and PUBLIC may execute). */
  default_acl: boolean;
  execute: Grant[];
}

async function existing(db: ReadDb, schema: string): Promise<Existing | null> {
  const [row] = await db.select(
    `SELECT pg_catalog.pg_get_function_result(p.oid) AS result, p.proargnames::text[] AS arg_names,
            p.pronargdefaults::int AS n_defaults, p.prokind::text AS kind,
            pg_catalog.pg_get_userbyid(p.proowner)::text AS owner,
            p.proacl IS NULL AS default_acl,
            coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                               'grantee', CASE WHEN x.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(x.grantee)::text END,
                               'grantable', x.is_grantable) ORDER BY x.grantee)
                        FROM pg_catalog.aclexplode(p.proacl) x WHERE x.privilege_type = 'EXECUTE'), '[]'::json) AS execute
       FROM pg_catalog.pg_proc p
      WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.format('%I.upsert_telegram_session(${ARGS})', $1::text))`,
    [schema],
  );
  if (!row) return null;
  return {
    result: String(row.result),
    arg_names: Array.isArray(row.arg_names) ? row.arg_names.map(String) : null,
    n_defaults: Number(row.n_defaults),
    kind: String(row.kind),
    owner: String(row.owner),
    default_acl: row.default_acl === true,
    execute: Array.isArray(row.execute)
      ? (row.execute as { grantee: unknown; grantable: unknown }[]).map((g) => ({ grantee: typeof g.grantee === 'string' ? g.grantee : null, grantable: g.grantable === true }))
      : [],
  };
}

/** Roles the migrating role's default privileges would grant EXECUTE on a new function in the schema. */
async function defaultGrantees(db: ReadDb, schema: string): Promise<string[]> {
  const rows = await db.select(
    `SELECT DISTINCT pg_catalog.pg_get_userbyid(x.grantee)::text AS role
       FROM pg_catalog.pg_default_acl d, pg_catalog.aclexplode(d.defaclacl) x
      WHERE d.defaclrole = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
        AND d.defaclobjtype = 'f' AND x.grantee <> 0 AND x.grantee <> d.defaclrole
        AND (d.defaclnamespace = 0 OR d.defaclnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1::text))
      ORDER BY 1`,
    [schema],
  );
  return rows.map((r) => String(r.role));
}

/**
 * Gives a just-created function `signature` the owner and EXECUTE privileges `old` had: its owner,
 * the owner's own EXECUTE, PUBLIC's, and every other grantee's (with grant option). Roles that
 * default privileges granted to the new function (`extra`) lose that grant again.
 */
function privilegesSql(signature: string, old: Existing, extra: string[]): string[] {
  const out = [`ALTER FUNCTION ${signature} OWNER TO ${ident(old.owner)}`, `REVOKE ALL ON FUNCTION ${signature} FROM PUBLIC`];
  for (const role of extra) if (role !== old.owner) out.push(`REVOKE ALL ON FUNCTION ${signature} FROM ${ident(role)}`);
  if (old.default_acl) {
    out.push(`GRANT EXECUTE ON FUNCTION ${signature} TO PUBLIC`);
    return out;
  }
  if (!old.execute.some((g) => g.grantee === old.owner)) out.push(`REVOKE ALL ON FUNCTION ${signature} FROM ${ident(old.owner)}`);
  const grants = new Map<string | null, boolean>();
  for (const g of old.execute) if (g.grantee !== old.owner) grants.set(g.grantee, (grants.get(g.grantee) ?? false) || g.grantable);
  for (const [grantee, grantable] of grants) {
    out.push(`GRANT EXECUTE ON FUNCTION ${signature} TO ${grantee === null ? 'PUBLIC' : ident(grantee)}${grantable && grantee !== null ? ' WITH GRANT OPTION' : ''}`);
  }
  return out;
}

export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  const old = await existing(pgm.db, schema);
  const signature = `${ident(schema)}.upsert_telegram_session(${ARGS})`;
  const replaceable =
    old === null ||
    (old.kind === 'f' && old.result === 'uuid' && old.n_defaults <= 3 && JSON.stringify(old.arg_names) === JSON.stringify(ARG_NAMES));
  if (old !== null && !replaceable) {
    ctx?.note(
      `the existing ${shown(schema)}.upsert_telegram_session cannot be replaced in place (returns ${old.result}, parameters ${(old.arg_names ?? []).join(', ') || 'unnamed'}): ` +
        `dropping and recreating it; owner ${old.owner} and EXECUTE privileges kept`,
    );
    pgm.sql(`DROP FUNCTION ${signature}`);
    pgm.sql(functionSql(schema));
    for (const sql of privilegesSql(signature, old, await defaultGrantees(pgm.db, schema))) pgm.sql(sql);
    return;
  }
  if (old !== null) ctx?.note(`replacing the existing ${shown(schema)}.upsert_telegram_session body (owner and grants kept)`);
  pgm.sql(functionSql(schema));
}

export async function down(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  pgm.sql(`DROP FUNCTION IF EXISTS ${ident(schema)}.upsert_telegram_session(${ARGS})`);
}
