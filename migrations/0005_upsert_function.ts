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
 * CREATE OR REPLACE keeps the function's owner and grants. When an existing function with this
 * argument list cannot be replaced in place (another return type, other parameter names, more
 * defaults), it is dropped and created in the same transaction and its EXECUTE grants re-applied.
 *
 * down: drops the function (no data is lost; a previous hand-written body is not restored).
 */
import type { MigrationBuilder } from 'node-pg-migrate';

interface ReadDb {
  select(sql: string, values?: unknown[]): Promise<any[]>;
}

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
const ARGS = 'varchar, varchar, text, varchar, varchar, text, text';
const ARG_NAMES = ['p_tenant_id', 'p_user_id', 'p_session_string_enc', 'p_key_id', 'p_status', 'p_auth_error', 'p_error_details'];

async function targetSchema(db: ReadDb): Promise<string> {
  const [row] = await db.select(`SELECT coalesce(nullif(current_setting('tsm.schema', true), ''), current_schema()) AS s`);
  if (!row?.s) throw new Error('no target schema: set tsm.schema or the search_path');
  return row.s as string;
}

export function functionSql(schema: string): string {
  const s = ident(schema);
  return `CREATE OR REPLACE FUNCTION ${s}.upsert_telegram_session(
  p_tenant_id varchar, p_user_id varchar, p_session_string_enc text, p_key_id varchar,
  p_status varchar DEFAULT 'pending', p_auth_error text DEFAULT NULL, p_error_details text DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql AS $fn$
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
$fn$`;
}

interface Existing {
  result: string;
  arg_names: string[] | null;
  n_defaults: number;
  kind: string;
  acl: { grantee: string; grantable: boolean }[] | null;
}

async function existing(db: ReadDb, schema: string): Promise<Existing | null> {
  const [row] = await db.select(
    `SELECT pg_catalog.pg_get_function_result(p.oid) AS result, p.proargnames::text[] AS arg_names,
            p.pronargdefaults::int AS n_defaults, p.prokind::text AS kind,
            CASE WHEN p.proacl IS NULL THEN NULL ELSE
              (SELECT coalesce(json_agg(json_build_object(
                         'grantee', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END,
                         'grantable', x.is_grantable)), '[]'::json)
                 FROM aclexplode(p.proacl) x WHERE x.privilege_type = 'EXECUTE' AND x.grantee <> p.proowner) END AS acl
       FROM pg_catalog.pg_proc p
      WHERE p.oid = to_regprocedure(format('%I.upsert_telegram_session(${ARGS})', $1::text))`,
    [schema],
  );
  return (row as Existing | undefined) ?? null;
}

export async function up(pgm: MigrationBuilder): Promise<void> {
  const schema = await targetSchema(pgm.db);
  const old = await existing(pgm.db, schema);
  const signature = `${ident(schema)}.upsert_telegram_session(${ARGS})`;
  const replaceable =
    old === null ||
    (old.kind === 'f' && old.result === 'uuid' && old.n_defaults <= 3 && JSON.stringify(old.arg_names) === JSON.stringify(ARG_NAMES));
  if (old !== null && !replaceable) {
    pgm.sql(`-- the existing ${schema}.upsert_telegram_session cannot be replaced in place (returns ${old.result}, parameters ${(old.arg_names ?? []).join(', ') || 'unnamed'}): dropping and recreating it, EXECUTE grants re-applied`);
    pgm.sql(`DROP FUNCTION ${signature}`);
  } else if (old !== null) {
    pgm.sql(`-- replacing the existing ${schema}.upsert_telegram_session body (owner and grants kept)`);
  }
  pgm.sql(functionSql(schema));
  if (old !== null && !replaceable && old.acl !== null) {
    // The old function had explicit privileges: a new one starts with EXECUTE for PUBLIC.
    if (!old.acl.some((a) => a.grantee === 'PUBLIC')) pgm.sql(`REVOKE EXECUTE ON FUNCTION ${signature} FROM PUBLIC`);
    for (const a of old.acl) {
      pgm.sql(`GRANT EXECUTE ON FUNCTION ${signature} TO ${a.grantee}${a.grantable ? ' WITH GRANT OPTION' : ''}`);
    }
  }
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  const schema = await targetSchema(pgm.db);
  pgm.sql(`DROP FUNCTION IF EXISTS ${ident(schema)}.upsert_telegram_session(${ARGS})`);
}
