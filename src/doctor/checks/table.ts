import { tsmCommand } from '../../report/shell.js';
import { depth, leaves, partitionTree, rowsOf, treeCte } from '../partitions.js';
import type { CatalogCheck, Facts, Partition } from '../types.js';
import { TABLE, plural, remedyText, shownIdent, shownTable } from '../util.js';

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

/** One partition as the table check's SQL returns it. */
export interface PartitionRow {
  schema: string;
  name: string;
  parent_schema: string;
  parent_name: string;
  level: number;
  key: string | null;
  key_columns: (string | null)[] | null;
  rows: number;
}

/** The one row of the table check (relkind and columns are null when there is no such relation). */
export interface TableRow {
  schema_exists: boolean;
  relkind: string | null;
  /** pg_class.reltuples of the table itself (its statistics' live tuples when never vacuumed or analyzed). */
  estimated_rows: number | null;
  columns: string[] | null;
  /** pg_get_partkeydef: `HASH (user_id)`, or null when not partitioned. */
  partition_key: string | null;
  partition_columns: (string | null)[] | null;
  /** Every partition at every level (null when not partitioned). */
  partitions: PartitionRow[] | null;
}

/** The runner reads the facts other checks depend on from this check's one row. */
export function factsFrom(rows: TableRow[]): Omit<Facts, 'migrations'> {
  const r: Partial<TableRow> = rows[0] ?? {};
  const tableExists = r.relkind === 'r' || r.relkind === 'p';
  const partitions: Partition[] = (tableExists && Array.isArray(r.partitions) ? r.partitions : []).map((p) => ({
    schema: p.schema,
    name: p.name,
    parentSchema: p.parent_schema,
    parentName: p.parent_name,
    level: Number(p.level),
    key: p.key ?? null,
    keyColumns: p.key_columns ?? null,
    rows: Number(p.rows),
  }));
  const partitioned = tableExists && r.relkind === 'p';
  const sizes = partitioned ? partitions.filter((p) => p.key === null).map((p) => p.rows) : [Number(r.estimated_rows ?? -1)];
  return {
    schemaExists: r.schema_exists === true,
    tableExists,
    columns: tableExists && Array.isArray(r.columns) ? r.columns : [],
    partitioning: partitioned ? { key: r.partition_key ?? '?', columns: r.partition_columns ?? [] } : null,
    partitions,
    estimatedRows: tableExists ? sizes.filter((n) => n > 0).reduce((a, b) => a + b, 0) : 0,
  };
}

/** `pg_partitioned_table.partattrs` of relation `rel` as column names (null for an expression). */
const keyColumns = (rel: string): string => `array(SELECT a.attname::text
                FROM pg_catalog.pg_partitioned_table pt
               CROSS JOIN LATERAL unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, ord)
                LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum AND k.attnum > 0
               WHERE pt.partrelid = ${rel} ORDER BY k.ord)`;

export const table: CatalogCheck<TableRow> = {
  id: 'table',
  title: 'telegram_sessions exists',
  severity: 'fail',
  kind: 'catalog',
  requires: [],
  looksAt:
    'pg_namespace and pg_class: whether the schema exists and holds a table (plain or partitioned) named ' +
    'telegram_sessions, its columns and the planner\'s row estimate (reltuples). For a partitioned table also its ' +
    'partition key (pg_get_partkeydef) and every partition at every level (pg_inherits; no lock is taken, so doctor never queues behind a migration), which the other ' +
    'checks then look at too.',
  why:
    'Every other check is about this table. When it is absent (or the application looks in another ' +
    'schema) every session save fails; the checks that need the table are reported as skipped. The row estimate ' +
    'decides whether the data checks count exactly or report the planner\'s estimate.',
  example: {
    bad: '-- the application writes to public.telegram_sessions, which does not exist (or is a view)',
    good: 'CREATE TABLE public.telegram_sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id varchar(255) NOT NULL, user_id varchar(255), …);',
  },
  sql: `SELECT n.oid IS NOT NULL          AS schema_exists,
       c.relkind::text              AS relkind,
       ${rowsOf('c')}             AS estimated_rows,
       array(SELECT a.attname::text FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum)   AS columns,
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key,
       CASE WHEN c.relkind = 'p' THEN ${keyColumns('c.oid')} END AS partition_columns,
       CASE WHEN c.relkind = 'p' THEN (
         WITH RECURSIVE ${treeCte('c.oid')}
         SELECT coalesce(json_agg(json_build_object(
                  'schema', pn.nspname, 'name', pc.relname,
                  'parent_schema', qn.nspname, 'parent_name', qc.relname, 'level', t.level,
                  'key', CASE WHEN pc.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(pc.oid) END,
                  'key_columns', CASE WHEN pc.relkind = 'p' THEN ${keyColumns('pc.oid')} END,
                  'rows', ${rowsOf('pc')})
                ORDER BY t.level, pn.nspname, pc.relname), '[]'::json)
           FROM tree t
           JOIN pg_catalog.pg_class pc     ON pc.oid = t.relid
           JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
           JOIN pg_catalog.pg_class qc     ON qc.oid = t.parentrelid
           JOIN pg_catalog.pg_namespace qn ON qn.oid = qc.relnamespace
          WHERE t.level > 0) END AS partitions
  FROM (SELECT $1::text AS nspname) s
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = s.nspname
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = '${TABLE}'`,
  evaluate(rows, env, facts) {
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
        remedy: `rename or drop the ${kind} ${name}, then run ${tsmCommand(env.schema, 'migrate up')}`,
      };
    }
    const columns = (r.columns ?? []).length;
    const rowsText = `, about ${Math.round(facts.estimatedRows).toLocaleString('en-US')} rows (planner estimate)`;
    let shape = '';
    if (facts.partitioning) {
      const leafCount = leaves(partitionTree(facts, env.schema)).length;
      const levels = depth(facts);
      const parts = facts.partitions.filter((p) => p.level === 1).length;
      shape =
        `, partitioned by ${facts.partitioning.key} into ${plural(parts, 'partition')}` +
        (levels > 1 ? ` (${levels} levels, ${plural(leafCount, 'leaf partition')})` : '');
    }
    return { status: 'ok', detail: `${name}: ${columns} columns${shape}${rowsText}` };
  },
  remedy: (env) => remedyText([`${tsmCommand(env.schema, 'migrate up')}   (creates the schema and the table when absent)`]),
};
