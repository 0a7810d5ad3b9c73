import { qualify, quoteIdent } from '../../db/ident.js';
import type { CatalogCheck, DoctorEnv } from '../types.js';
import { FUNCTION, TABLE, remedyText, tableRef } from '../util.js';

interface FunctionPrivilege {
  signature: string;
  args: string;
  execute: boolean;
}

/** The one row: the current role's privileges on the schema, the table and each upsert function. */
export interface PrivilegesRow {
  role: string;
  schema_usage: boolean;
  can_select: boolean;
  can_insert: boolean;
  can_update: boolean;
  functions: FunctionPrivilege[];
}

function grants(r: PrivilegesRow, env: DoctorEnv): { missing: string[]; sql: string[] } {
  const role = quoteIdent(String(r.role));
  const missing: string[] = [];
  const sql: string[] = [];
  if (!r.schema_usage) {
    missing.push(`USAGE on schema ${env.schema}`);
    sql.push(`GRANT USAGE ON SCHEMA ${quoteIdent(env.schema)} TO ${role};`);
  }
  const has = { SELECT: r.can_select, INSERT: r.can_insert, UPDATE: r.can_update };
  const table = (['SELECT', 'INSERT', 'UPDATE'] as const).filter((p) => !has[p]);
  if (table.length > 0) {
    missing.push(`${table.join(', ')} on ${TABLE}`);
    sql.push(`GRANT ${table.join(', ')} ON ${tableRef(env)} TO ${role};`);
  }
  for (const f of r.functions ?? []) {
    if (f.execute) continue;
    missing.push(`EXECUTE on ${FUNCTION}(${f.args})`);
    sql.push(`GRANT EXECUTE ON FUNCTION ${qualify(env.schema, FUNCTION)}(${f.args}) TO ${role};`);
  }
  return { missing, sql };
}

export const privileges: CatalogCheck<PrivilegesRow> = {
  id: 'privileges',
  title: 'Current role can save sessions',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  example: {
    bad: 'REVOKE INSERT, UPDATE ON public.telegram_sessions FROM app;   -- every save by app fails with 42501',
    good: 'GRANT SELECT, INSERT, UPDATE ON public.telegram_sessions TO app;',
  },
  looksAt:
    'For the role tsm is connected as (run doctor as the application\'s role): USAGE on the schema, SELECT, ' +
    `INSERT and UPDATE on ${TABLE}, and EXECUTE on ${FUNCTION} when it exists ` +
    '(has_schema_privilege, has_table_privilege, has_function_privilege; grants through roles and PUBLIC count). On a ' +
    'partitioned table the parent\'s grants are the ones that count: rows reach the partitions through it.',
  why:
    'A save needs all of them; a missing one fails with 42501 (permission_denied), which the incident\'s ' +
    'catch-all reported as database_save_failed. PostgreSQL grants EXECUTE on new functions to PUBLIC, so a ' +
    'role only lacks it where that grant was revoked.',
  sql: `SELECT current_user::text                         AS role,
       has_schema_privilege(n.oid, 'USAGE')        AS schema_usage,
       has_table_privilege(c.oid, 'SELECT')        AS can_select,
       has_table_privilege(c.oid, 'INSERT')        AS can_insert,
       has_table_privilege(c.oid, 'UPDATE')        AS can_update,
       coalesce((SELECT json_agg(json_build_object(
                          'signature', p.oid::regprocedure::text,
                          'args', pg_catalog.oidvectortypes(p.proargtypes),
                          'execute', has_function_privilege(p.oid, 'EXECUTE')) ORDER BY p.oid)
                   FROM pg_catalog.pg_proc p
                  WHERE p.pronamespace = n.oid AND p.proname = '${FUNCTION}'), '[]') AS functions
  FROM pg_catalog.pg_namespace n
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = '${TABLE}'
 WHERE n.nspname = $1::text`,
  evaluate(rows, env) {
    const r = rows[0];
    if (!r) return { status: 'skipped', detail: 'the table is gone' };
    const { missing, sql } = grants(r, env);
    const fns = (r.functions ?? []).length;
    if (missing.length === 0) {
      return {
        status: 'ok',
        detail: `role ${r.role}: SELECT, INSERT, UPDATE${fns > 0 ? `, EXECUTE on ${FUNCTION}` : ''}`,
      };
    }
    return {
      status: 'fail',
      detail: `role ${r.role} lacks ${missing.join('; ')}`,
      remedy: remedyText([], sql, 'run as the table owner or a superuser:'),
    };
  },
  remedy: (env) =>
    remedyText(
      [],
      [
        `GRANT USAGE ON SCHEMA ${quoteIdent(env.schema)} TO app_role;`,
        `GRANT SELECT, INSERT, UPDATE ON ${tableRef(env)} TO app_role;`,
        `GRANT EXECUTE ON FUNCTION ${qualify(env.schema, FUNCTION)}(varchar, varchar, text, varchar, varchar, text, text) TO app_role;`,
      ],
      "run as the table owner or a superuser (app_role: the application's role):",
    ),
};
