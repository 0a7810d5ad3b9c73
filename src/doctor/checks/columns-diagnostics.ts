import type { CatalogCheck } from '../types.js';
import { TABLE, remedyText, tableRef } from '../util.js';
import { tsmCommand } from '../../report/shell.js';

const DIAGNOSTIC = ['auth_error', 'error_details'];

/** One row per diagnostic column present. */
export interface DiagnosticColumnRow {
  column: string;
  type: string;
}

export const columnsDiagnostics: CatalogCheck<DiagnosticColumnRow> = {
  id: 'columns.diagnostics',
  title: 'Diagnostic columns present',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  example: {
    bad: '-- telegram_sessions without auth_error / error_details: a failed save leaves no trace in the row',
    good: 'ALTER TABLE public.telegram_sessions ADD COLUMN IF NOT EXISTS auth_error text, ADD COLUMN IF NOT EXISTS error_details text;',
  },
  looksAt: 'pg_attribute of telegram_sessions: the columns auth_error and error_details.' +
    ' Partitions have the parent\'s columns and types (PostgreSQL enforces it), so the parent speaks for them.',
  why:
    'They record the classified error code and details of the last failed save, so a failure is ' +
    'visible in the row instead of one opaque database_save_failed. The upsert function writes them.',
  sql: `SELECT a.attname::text                          AS column,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c     ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1::text AND c.relname = '${TABLE}'
   AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname IN ('auth_error', 'error_details')
 ORDER BY a.attnum`,
  evaluate(rows, env) {
    const present = new Set(rows.map((r) => r.column));
    const missing = DIAGNOSTIC.filter((c) => !present.has(c));
    if (missing.length === 0) return { status: 'ok', detail: rows.map((r) => `${r.column} ${r.type}`).join(', ') };
    return {
      status: 'fail',
      detail: `missing: ${missing.join(', ')}`,
      remedy: remedyText(
        [tsmCommand(env.schema, 'migrate up')],
        [`ALTER TABLE ${tableRef(env)} ${missing.map((c) => `ADD COLUMN IF NOT EXISTS ${c} text`).join(', ')};`],
      ),
    };
  },
  remedy: (env) =>
    remedyText(
      [tsmCommand(env.schema, 'migrate up')],
      [`ALTER TABLE ${tableRef(env)} ADD COLUMN IF NOT EXISTS auth_error text, ADD COLUMN IF NOT EXISTS error_details text;`],
    ),
};
