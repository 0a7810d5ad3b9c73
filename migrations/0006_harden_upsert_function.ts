/**
 * 0006_harden_upsert_function: upsert_telegram_session that nothing on a caller's search_path can
 * hijack, and that accepts integer user ids.
 *
 * The text function (same signature, same behaviour as 0005: INSERT … ON CONFLICT (user_id)
 * WHERE user_id IS NOT NULL DO UPDATE … only for the same tenant; NULL user → 23502; another
 * tenant's row → TSM01) becomes
 *   - SECURITY INVOKER (it runs with the caller's rights, never more),
 *   - SET search_path = pg_catalog, pg_temp (the caller's search_path is not in force inside it),
 *   - with every table, function and operator schema-qualified (the tenant comparison is
 *     OPERATOR(pg_catalog.=)), so an object planted in a schema on the caller's search_path (a
 *     `=(varchar, varchar)` operator in public, say) never runs inside it.
 * CREATE OR REPLACE keeps its owner and every grant. Should the function have been changed so that
 * it cannot be replaced in place, it is dropped and recreated with 0005's rules: owner, the
 * owner's, PUBLIC's and every role's EXECUTE are given back in the same transaction.
 *
 * Integer user ids: Telethon's `me.id` is an int, and drivers send it as integer/bigint, for which
 * no (varchar) function exists (42883). An overload taking p_user_id bigint, hardened the same way,
 * calls the text function. PostgreSQL's resolution keeps string calls unambiguous: an unknown
 * literal ('12345') or untyped parameter prefers the string category (the varchar version); an
 * integer or bigint argument has an implicit cast to bigint only. A new overload gets the text
 * function's owner and EXECUTE privileges: whoever may call one may call the other.
 *
 * down: restores 0005's body on the text function (owner and grants kept) and drops the bigint
 * overload; the application is never left without the function.
 */
import type { MigrationBuilder } from 'node-pg-migrate';
import type { MigrationContext, ReadDb } from '../src/migrate/context.js';

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
/** A name for messages: as typed when plain, else quoted. */
const shown = (s: string): string => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : ident(s));
const TEXT_ARGS = 'varchar, varchar, text, varchar, varchar, text, text';
const BIGINT_ARGS = 'varchar, bigint, text, varchar, varchar, text, text';
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

const HARDENING = `SECURITY INVOKER
SET search_path = pg_catalog, pg_temp`;

/** The hardened text function. */
export function textFunctionSql(schema: string): string {
  const s = ident(schema);
  const body = `
DECLARE v_id pg_catalog.uuid;
BEGIN
  IF p_user_id IS NULL THEN
    RAISE EXCEPTION 'p_user_id must not be NULL' USING ERRCODE = 'not_null_violation';
  END IF;
  INSERT INTO ${s}.telegram_sessions AS t
    (tenant_id, user_id, session_string_enc, key_id, status, auth_error, error_details)
  VALUES (p_tenant_id, p_user_id, p_session_string_enc, p_key_id, COALESCE(p_status, 'pending'), p_auth_error, p_error_details)
  ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE
    SET session_string_enc = EXCLUDED.session_string_enc, key_id = EXCLUDED.key_id, status = EXCLUDED.status,
        auth_error = EXCLUDED.auth_error, error_details = EXCLUDED.error_details, updated_at = pg_catalog.now()
    WHERE t.tenant_id OPERATOR(pg_catalog.=) EXCLUDED.tenant_id
  RETURNING t.id INTO v_id;
  IF v_id IS NULL THEN
    RAISE EXCEPTION 'user_id % belongs to another tenant', p_user_id
      USING ERRCODE = 'TSM01', HINT = 'tenant_mismatch: the row of this user_id was not changed';
  END IF;
  RETURN v_id;
END
`;
  return `CREATE OR REPLACE FUNCTION ${s}.upsert_telegram_session(
  p_tenant_id varchar, p_user_id varchar, p_session_string_enc pg_catalog.text, p_key_id varchar,
  p_status varchar DEFAULT 'pending', p_auth_error pg_catalog.text DEFAULT NULL, p_error_details pg_catalog.text DEFAULT NULL
) RETURNS pg_catalog.uuid
LANGUAGE plpgsql
${HARDENING}
AS ${dollarQuote(body, 'fn')}`;
}

/** The bigint overload: the same call with the user id as text. */
export function bigintFunctionSql(schema: string): string {
  const s = ident(schema);
  const body = `
SELECT ${s}.upsert_telegram_session(p_tenant_id, CAST(p_user_id AS pg_catalog.varchar), p_session_string_enc, p_key_id,
                                    p_status, p_auth_error, p_error_details)
`;
  return `CREATE OR REPLACE FUNCTION ${s}.upsert_telegram_session(
  p_tenant_id varchar, p_user_id bigint, p_session_string_enc pg_catalog.text, p_key_id varchar,
  p_status varchar DEFAULT 'pending', p_auth_error pg_catalog.text DEFAULT NULL, p_error_details pg_catalog.text DEFAULT NULL
) RETURNS pg_catalog.uuid
LANGUAGE sql
${HARDENING}
AS ${dollarQuote(body, 'fn')}`;
}

/** 0005's body, exactly (down restores it). */
function function0005Sql(schema: string): string {
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

async function existing(db: ReadDb, schema: string, args: string): Promise<Existing | null> {
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
      WHERE p.oid = pg_catalog.to_regprocedure(pg_catalog.format('%I.upsert_telegram_session(%s)', $1::text, $2::text))`,
    [schema, args],
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

function replaceable(f: Existing): boolean {
  return f.kind === 'f' && f.result === 'uuid' && f.n_defaults <= 3 && JSON.stringify(f.arg_names) === JSON.stringify(ARG_NAMES);
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
 * Gives a just-created function `signature` the owner and EXECUTE privileges of `from`: its owner,
 * the owner's own EXECUTE, PUBLIC's, and every other grantee's (with grant option). Roles that
 * default privileges granted to the new function (`extra`) lose that grant again.
 */
function privilegesSql(signature: string, from: Existing, extra: string[]): string[] {
  const out = [`ALTER FUNCTION ${signature} OWNER TO ${ident(from.owner)}`, `REVOKE ALL ON FUNCTION ${signature} FROM PUBLIC`];
  for (const role of extra) if (role !== from.owner) out.push(`REVOKE ALL ON FUNCTION ${signature} FROM ${ident(role)}`);
  if (from.default_acl) {
    out.push(`GRANT EXECUTE ON FUNCTION ${signature} TO PUBLIC`);
    return out;
  }
  if (!from.execute.some((g) => g.grantee === from.owner)) out.push(`REVOKE ALL ON FUNCTION ${signature} FROM ${ident(from.owner)}`);
  const grants = new Map<string | null, boolean>();
  for (const g of from.execute) if (g.grantee !== from.owner) grants.set(g.grantee, (grants.get(g.grantee) ?? false) || g.grantable);
  for (const [grantee, grantable] of grants) {
    out.push(`GRANT EXECUTE ON FUNCTION ${signature} TO ${grantee === null ? 'PUBLIC' : ident(grantee)}${grantable && grantee !== null ? ' WITH GRANT OPTION' : ''}`);
  }
  return out;
}

export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  const fn = `${shown(schema)}.upsert_telegram_session`;
  const textSig = `${ident(schema)}.upsert_telegram_session(${TEXT_ARGS})`;
  const bigintSig = `${ident(schema)}.upsert_telegram_session(${BIGINT_ARGS})`;
  const text = await existing(pgm.db, schema, TEXT_ARGS);
  const big = await existing(pgm.db, schema, BIGINT_ARGS);
  const extra = text !== null || big !== null ? await defaultGrantees(pgm.db, schema) : [];

  // The text function.
  if (text === null) {
    ctx?.note(`${fn} did not exist: created`);
    pgm.sql(textFunctionSql(schema));
  } else if (replaceable(text)) {
    ctx?.note(`${fn}: body hardened in place (SECURITY INVOKER, search_path pinned, operators qualified); owner and grants kept`);
    pgm.sql(textFunctionSql(schema));
  } else {
    ctx?.note(
      `${fn} cannot be replaced in place (returns ${text.result}, parameters ${(text.arg_names ?? []).join(', ') || 'unnamed'}): ` +
        `dropping and recreating it; owner ${text.owner} and EXECUTE privileges kept`,
    );
    pgm.sql(`DROP FUNCTION ${textSig}`);
    pgm.sql(textFunctionSql(schema));
    for (const sql of privilegesSql(textSig, text, extra)) pgm.sql(sql);
  }

  // The bigint overload.
  if (big === null) {
    ctx?.note(`${fn}(…, p_user_id bigint, …) added for integer user ids${text === null ? '' : `, with the owner and EXECUTE privileges of the text version`}`);
    pgm.sql(bigintFunctionSql(schema));
    if (text !== null) for (const sql of privilegesSql(bigintSig, text, extra)) pgm.sql(sql);
  } else if (replaceable(big)) {
    ctx?.note(`${fn}(…, p_user_id bigint, …) exists: replaced in place (owner and grants kept)`);
    pgm.sql(bigintFunctionSql(schema));
  } else {
    ctx?.note(`${fn}(…, p_user_id bigint, …) cannot be replaced in place: dropping and recreating it; owner ${big.owner} and EXECUTE privileges kept`);
    pgm.sql(`DROP FUNCTION ${bigintSig}`);
    pgm.sql(bigintFunctionSql(schema));
    for (const sql of privilegesSql(bigintSig, big, extra)) pgm.sql(sql);
  }
}

export async function down(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  const fn = `${shown(schema)}.upsert_telegram_session`;
  const text = await existing(pgm.db, schema, TEXT_ARGS);
  if (text !== null && !replaceable(text)) {
    throw new Error(
      `refusing to revert 0006: ${fn}(${TEXT_ARGS}) was changed since (returns ${text.result}, parameters ` +
        `${(text.arg_names ?? []).join(', ') || 'unnamed'}), so 0005's body cannot be put back in place; the function is left as it is`,
    );
  }
  ctx?.note(`${fn}: 0005's body restored (owner and grants kept); the bigint overload dropped`);
  pgm.sql(function0005Sql(schema));
  pgm.sql(`DROP FUNCTION IF EXISTS ${ident(schema)}.upsert_telegram_session(${BIGINT_ARGS})`);
}
