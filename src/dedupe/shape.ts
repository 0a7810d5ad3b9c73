/**
 * What dedupe needs to know about telegram_sessions (its columns, the key that identifies a row,
 * its partitions) and the archive table it moves rows into: created when absent, in the same
 * schema, with the table's columns plus `archived_at` and `kept_id`; columns the table gained
 * since are added to it.
 *
 * Partitioned tables: dedupe works where `user_id` is the whole partition key at every level
 * (HASH, LIST or RANGE on user_id), because then all rows of one user_id sit in one leaf
 * partition and each batch works inside one leaf. Elsewhere (RANGE on created_at, say) it
 * refuses: a unique index on user_id alone cannot exist there, so there is nothing to prepare.
 */
import type { Client } from 'pg';
import { FailError } from '../errors.js';
import { qualify, quoteIdent } from '../db/ident.js';

export const TABLE = 'telegram_sessions';
export const ARCHIVE = 'telegram_sessions_duplicates_archive';
/** Columns only the archive has. */
export const ARCHIVE_EXTRA = ['archived_at', 'kept_id'] as const;

export interface Column {
  name: string;
  /** format_type(): e.g. `uuid`, `character varying(255)`, `timestamp with time zone`. */
  type: string;
}

/** A relation rows are moved out of: the table itself, or one leaf partition of it. */
export interface Leaf {
  oid: number;
  schema: string;
  name: string;
}

export interface TableShape {
  schema: string;
  columns: Column[];
  /** format_type of `id`. */
  idType: string;
  /** created_at breaks ties between equal updated_at; optional in hand-made schemas. */
  hasCreatedAt: boolean;
  /**
   * The columns that identify a row (the smallest valid unique key holding `id`): `id` on the
   * incident's table, `id, user_id` on a table partitioned by user_id (whose primary key must
   * hold the partition key). The row-by-row check of moved rows uses it.
   */
  rowKey: Column[];
  /** The partitioning, e.g. `HASH (user_id)`, or null for a plain table. */
  partitionKey: string | null;
  /** Where rows live: [the table] for a plain table, its leaf partitions otherwise. */
  leaves: Leaf[];
}

const RELATION_SQL = `
SELECT c.oid::int8 AS oid, c.relkind::text AS relkind
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`;

const COLUMNS_SQL = `
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

/** Valid unique keys without predicate or expression, each as its column names in key order. */
const UNIQUE_KEYS_SQL = `
SELECT array_agg(a.attname::text ORDER BY k.ord) AS columns
  FROM pg_catalog.pg_index i
 CROSS JOIN LATERAL unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
 GROUP BY i.indexrelid`;

/**
 * Every relation of a partition tree: the partitioned ones with their key (as written, and the
 * names of its plain columns, NULL where the key has an expression), the leaves with their kind.
 */
const PARTITION_TREE_SQL = `
SELECT t.relid::oid::int8 AS oid, c.relkind::text AS relkind, n.nspname AS schema, c.relname AS name,
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partkey,
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM pg_catalog.pg_partitioned_table p
         CROSS JOIN LATERAL unnest(p.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
          LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.attnum
         WHERE p.partrelid = c.oid AND p.partexprs IS NULL) AS key_columns
  FROM pg_catalog.pg_partition_tree($1::oid::regclass) t
  JOIN pg_catalog.pg_class c ON c.oid = t.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 ORDER BY t.level, c.relname`;

export async function columnsOf(client: Client, schema: string, table: string): Promise<Column[]> {
  const r = await client.query<Column & { not_null: boolean }>(COLUMNS_SQL, [schema, table]);
  return r.rows.map((c) => ({ name: c.name, type: c.type }));
}

/** The table's shape, or a FailError (exit 1, with a stable code) saying why dedupe cannot work on it. */
export async function describeTable(client: Client, schema: string): Promise<TableShape> {
  const where = `${schema}.${TABLE}`;
  const rel = (await client.query<{ oid: string; relkind: string }>(RELATION_SQL, [schema, TABLE])).rows[0];
  if (!rel) {
    throw new FailError(`no table ${where}: nothing to dedupe (wrong --schema? \`tsm doctor\` shows what is there)`, { code: 'no_table' });
  }
  const oid = Number(rel.oid);
  const withNull = (await client.query<Column & { not_null: boolean }>(COLUMNS_SQL, [schema, TABLE])).rows;
  const columns = withNull.map((c) => ({ name: c.name, type: c.type }));
  const names = new Set(columns.map((c) => c.name));
  const missing = ['id', 'user_id', 'updated_at'].filter((c) => !names.has(c));
  if (missing.length > 0) {
    throw new FailError(`${where} has no column ${missing.join(', ')}: dedupe identifies rows by id and keeps the newest by updated_at`, {
      code: 'table_shape',
    });
  }
  const clash = ARCHIVE_EXTRA.filter((c) => names.has(c));
  if (clash.length > 0) {
    throw new FailError(`${where} has a column named ${clash.join(', ')}, which the archive table uses for itself`, { code: 'table_shape' });
  }

  let partitionKey: string | null = null;
  let leaves: Leaf[] = [{ oid, schema, name: TABLE }];
  if (rel.relkind === 'p') {
    const tree = (
      await client.query<{ oid: string; relkind: string; schema: string; name: string; partkey: string | null; key_columns: string[] | null }>(
        PARTITION_TREE_SQL,
        [oid],
      )
    ).rows;
    partitionKey = tree[0]?.partkey ?? null;
    for (const r of tree.filter((t) => t.relkind === 'p')) {
      const byUser = r.key_columns !== null && r.key_columns.length === 1 && r.key_columns[0] === 'user_id';
      if (!byUser) {
        const which = Number(r.oid) === oid ? where : `${where} (its partition ${r.schema}.${r.name})`;
        throw new FailError(
          `${which} is partitioned by ${r.partkey ?? 'an expression'}: the rows of one user_id can sit in different partitions, ` +
            `so no unique index on user_id alone can exist there and dedupe has nothing to prepare; partition by user_id ` +
            `(HASH or LIST), or keep a separate unpartitioned user_id lookup table (\`tsm doctor --explain index.user-id-unique\`)`,
          { code: 'partition_key', data: { partition_key: r.partkey } },
        );
      }
    }
    const foreign = tree.find((t) => t.relkind !== 'p' && t.relkind !== 'r');
    if (foreign) {
      throw new FailError(`${where} has a partition ${foreign.schema}.${foreign.name} that is not a plain table (a foreign table?): dedupe moves rows only in local partitions`, {
        code: 'partition_kind',
      });
    }
    leaves = tree.filter((t) => t.relkind === 'r').map((t) => ({ oid: Number(t.oid), schema: t.schema, name: t.name }));
  }

  // The row key: the smallest unique key holding id whose other columns cannot be NULL in a row
  // dedupe moves (user_id is never NULL there).
  const notNull = new Map(withNull.map((c) => [c.name, c.not_null || c.name === 'user_id']));
  const keys = (await client.query<{ columns: string[] }>(UNIQUE_KEYS_SQL, [oid])).rows
    .map((r) => r.columns)
    .filter((cols) => cols.includes('id') && cols.every((c) => c === 'id' || notNull.get(c) === true))
    .sort((a, b) => a.length - b.length || (a.join() < b.join() ? -1 : 1));
  const best = keys[0];
  if (!best) {
    throw new FailError(
      `${where} has no unique key holding id (a primary key on id${rel.relkind === 'p' ? ', or on (id, user_id) for a table partitioned by user_id' : ''}): ` +
        `dedupe checks every row it moves by that key`,
      { code: 'no_row_key' },
    );
  }
  const typeOf = new Map(columns.map((c) => [c.name, c.type]));
  const rowKey = best.map((name) => ({ name, type: typeOf.get(name)! }));
  return { schema, columns, idType: typeOf.get('id')!, hasCreatedAt: names.has('created_at'), rowKey, partitionKey, leaves };
}

/**
 * The archive DDL. Columns are plain (no NOT NULL, no defaults, no constraints): the archive must
 * accept any row the table ever held. Indexes on id and user_id make look-ups and restores cheap.
 */
export function createArchiveSql(shape: TableShape): string[] {
  const archive = qualify(shape.schema, ARCHIVE);
  const cols = shape.columns.map((c) => `  ${quoteIdent(c.name)} ${c.type}`);
  cols.push('  archived_at timestamptz NOT NULL DEFAULT now()', `  kept_id ${shape.idType}`);
  return [
    `CREATE TABLE IF NOT EXISTS ${archive} (\n${cols.join(',\n')}\n)`,
    `COMMENT ON TABLE ${archive} IS 'rows moved out of ${TABLE} by tsm dedupe: kept_id is the row that was kept for the same user_id'`,
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(ARCHIVE + '_id_idx')} ON ${archive} (id)`,
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(ARCHIVE + '_user_id_idx')} ON ${archive} (user_id)`,
  ];
}

/**
 * The statements that make the archive fit the table: create it when absent; when it exists, add
 * the columns the table has gained since (e.g. auth_error after `tsm migrate up`) and widen
 * columns whose type changed (e.g. a session column widened to text), so every row fits.
 * Run by the caller inside one transaction.
 */
export async function archiveDdl(client: Client, shape: TableShape): Promise<string[]> {
  const existing = await columnsOf(client, shape.schema, ARCHIVE);
  if (existing.length === 0) return createArchiveSql(shape);
  const archive = qualify(shape.schema, ARCHIVE);
  const have = new Map(existing.map((c) => [c.name, c.type]));
  const wanted: Column[] = [...shape.columns, { name: 'archived_at', type: 'timestamp with time zone' }, { name: 'kept_id', type: shape.idType }];
  const out: string[] = [];
  for (const col of wanted) {
    const type = have.get(col.name);
    if (type === undefined) {
      out.push(`ALTER TABLE ${archive} ADD COLUMN ${quoteIdent(col.name)} ${col.type}${col.name === 'archived_at' ? ' DEFAULT now()' : ''}`);
    } else if (type !== col.type) {
      out.push(`ALTER TABLE ${archive} ALTER COLUMN ${quoteIdent(col.name)} TYPE ${col.type} USING ${quoteIdent(col.name)}::${col.type}`);
    }
  }
  return out;
}
