import type { CatalogCheck, Facts } from '../types.js';
import { TABLE, remedyText, shownIdent, shownTable, tsmCommand } from '../util.js';

const KINDS: Record<string, string> = {
  r: 'table',
  p: 'partitioned table',
  v: 'view',
  m: 'materialized view',
  f: 'foreign table',
  S: 'sequence',
  i: 'index',
  I: 'partitioned index',
  c: 'composite type',
  t: 'TOAST table',
};

/** The one row of the table check (relkind and columns are null when there is no such relation). */
export interface TableRow {
  schema_exists: boolean;
  relkind: string | null;
  estimated_rows: number | null;
  columns: string[] | null;
}

/** The runner reads the facts other checks depend on from this check's one row. */
export function factsFrom(rows: TableRow[]): Facts {
  const r: Partial<TableRow> = rows[0] ?? {};
  const tableExists = r.relkind === 'r' || r.relkind === 'p';
  return {
    schemaExists: r.schema_exists === true,
    tableExists,
    columns: tableExists && Array.isArray(r.columns) ? r.columns : [],
  };
}

export const table: CatalogCheck<TableRow> = {
  id: 'table',
  title: 'telegram_sessions exists',
  severity: 'fail',
  kind: 'catalog',
  requires: [],
  looksAt: 'pg_namespace and pg_class: whether the schema exists and holds a table named telegram_sessions.',
  why:
    'Every other check is about this table. When it is absent (or the application looks in another ' +
    'schema) every session save fails; the checks that need the table are reported as skipped.',
  sql: `SELECT n.oid IS NOT NULL          AS schema_exists,
       c.relkind::text              AS relkind,
       c.reltuples::bigint          AS estimated_rows,
       array(SELECT a.attname::text FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum)   AS columns
  FROM (SELECT $1::text AS nspname) s
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = s.nspname
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = '${TABLE}'`,
  evaluate(rows, env) {
    const r: Partial<TableRow> = rows[0] ?? {};
    const name = shownTable(env);
    if (r.schema_exists !== true) {
      return { status: 'fail', detail: `schema ${shownIdent(env.schema)} does not exist` };
    }
    if (r.relkind == null) return { status: 'fail', detail: `${name} does not exist` };
    if (r.relkind !== 'r' && r.relkind !== 'p') {
      const kind = KINDS[r.relkind] ?? `relation of kind '${r.relkind}'`;
      return {
        status: 'fail',
        detail: `${name} is a ${kind}, not a table`,
        remedy: `rename or drop the ${kind} ${name}, then run ${tsmCommand(env, 'migrate up')}`,
      };
    }
    const columns = (r.columns ?? []).length;
    const estimate = Number(r.estimated_rows);
    const rowsText = estimate >= 0 ? `, about ${estimate.toLocaleString('en-US')} rows (planner estimate)` : '';
    return { status: 'ok', detail: `${name}: ${columns} columns${rowsText}` };
  },
  remedy: (env) => remedyText([`${tsmCommand(env, 'migrate up')}   (creates the schema and the table when absent)`]),
};
