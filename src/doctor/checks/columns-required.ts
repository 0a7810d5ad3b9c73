import type { CatalogCheck } from '../types.js';
import { TABLE, remedyText, tableRef } from '../util.js';

/** The columns every writer of a session needs, with the type the fixed schema gives them. */
const REQUIRED: Record<string, string> = {
  tenant_id: 'varchar(255)',
  user_id: 'varchar(255)',
  session_string_enc: 'text',
  key_id: 'varchar(64)',
  status: "varchar(20) NOT NULL DEFAULT 'pending'",
  updated_at: 'timestamptz NOT NULL DEFAULT now()',
};

/** One row per required column present. */
export interface RequiredColumnRow {
  column: string;
  type: string;
  not_null: boolean;
}

export const columnsRequired: CatalogCheck<RequiredColumnRow> = {
  id: 'columns.required',
  title: 'Required columns present',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  example: {
    bad: 'CREATE TABLE public.telegram_sessions (id uuid PRIMARY KEY, session text);   -- no tenant_id, user_id, …',
    good: 'ALTER TABLE public.telegram_sessions ADD COLUMN IF NOT EXISTS user_id varchar(255);',
  },
  looksAt: `pg_attribute of telegram_sessions: the columns ${Object.keys(REQUIRED).join(', ')}.` +
    ' Partitions have the parent\'s columns and types (PostgreSQL enforces it), so the parent speaks for them.',
  why:
    'The upsert (and every application INSERT) names these columns; a missing one fails every save ' +
    'with SQLSTATE 42703 (missing_column).',
  sql: `SELECT a.attname::text                          AS column,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull                             AS not_null
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c     ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1::text AND c.relname = '${TABLE}'
   AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname IN (${Object.keys(REQUIRED)
     .map((c) => `'${c}'`)
     .join(', ')})
 ORDER BY a.attnum`,
  evaluate(rows, env) {
    const present = new Set(rows.map((r) => r.column));
    const missing = Object.keys(REQUIRED).filter((c) => !present.has(c));
    if (missing.length === 0) return { status: 'ok', detail: `all ${present.size} present` };
    const sql = missing.map((c) => `ALTER TABLE ${tableRef(env)} ADD COLUMN ${c} ${REQUIRED[c]};`);
    if (missing.includes('tenant_id')) {
      sql.push(`-- backfill tenant_id, then: ALTER TABLE ${tableRef(env)} ALTER COLUMN tenant_id SET NOT NULL;`);
    }
    return { status: 'fail', detail: `missing: ${missing.join(', ')}`, remedy: remedyText([], sql) };
  },
  remedy: (env) =>
    remedyText(
      [],
      Object.entries(REQUIRED).map(([c, t]) => `ALTER TABLE ${tableRef(env)} ADD COLUMN IF NOT EXISTS ${c} ${t};`),
    ),
};
