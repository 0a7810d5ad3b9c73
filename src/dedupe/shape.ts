/**
 * What dedupe needs to know about telegram_sessions (its columns, the type of `id`) and the
 * archive table it moves rows into: created when absent, in the same schema, with the table's
 * columns plus `archived_at` and `kept_id`; columns the table gained since are added to it.
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

export interface TableShape {
  schema: string;
  columns: Column[];
  /** format_type of `id`. */
  idType: string;
  /** created_at breaks ties between equal updated_at; optional in hand-made schemas. */
  hasCreatedAt: boolean;
}

const COLUMNS_SQL = `
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

/** Is there a unique index (or primary key) whose only key is `id`, valid and without predicate? */
const ID_UNIQUE_SQL = `
SELECT EXISTS (
  SELECT 1
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
   WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indisvalid
     AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = 'id'
) AS unique_id`;

export async function columnsOf(client: Client, schema: string, table: string): Promise<Column[]> {
  const r = await client.query<Column>(COLUMNS_SQL, [schema, table]);
  return r.rows;
}

/** The table's shape, or a FailError (exit 1) saying why dedupe cannot work on it. */
export async function describeTable(client: Client, schema: string): Promise<TableShape> {
  const columns = await columnsOf(client, schema, TABLE);
  const where = `${schema}.${TABLE}`;
  if (columns.length === 0) {
    throw new FailError(`no table ${where}: nothing to dedupe (wrong --schema? \`tsm doctor\` shows what is there)`);
  }
  const names = new Set(columns.map((c) => c.name));
  const missing = ['id', 'user_id', 'updated_at'].filter((c) => !names.has(c));
  if (missing.length > 0) {
    throw new FailError(`${where} has no column ${missing.join(', ')}: dedupe identifies rows by id and keeps the newest by updated_at`);
  }
  const clash = ARCHIVE_EXTRA.filter((c) => names.has(c));
  if (clash.length > 0) {
    throw new FailError(`${where} has a column named ${clash.join(', ')}, which the archive table uses for itself`);
  }
  const { rows } = await client.query<{ unique_id: boolean }>(ID_UNIQUE_SQL, [schema, TABLE]);
  if (!rows[0]?.unique_id) {
    throw new FailError(`${where}.id is not unique (no primary key or unique index on id): dedupe identifies rows by id`);
  }
  const idType = columns.find((c) => c.name === 'id')!.type;
  return { schema, columns, idType, hasCreatedAt: names.has('created_at') };
}

/**
 * The archive DDL. Columns are plain (no NOT NULL, no defaults, no constraints): the archive must
 * accept any row the table ever held. Indexes on id and user_id make look-ups and restores cheap.
 */
export function createArchiveSql(shape: TableShape): string {
  const archive = qualify(shape.schema, ARCHIVE);
  const cols = shape.columns.map((c) => `  ${quoteIdent(c.name)} ${c.type}`);
  cols.push('  archived_at timestamptz NOT NULL DEFAULT now()', `  kept_id ${shape.idType}`);
  return [
    `CREATE TABLE IF NOT EXISTS ${archive} (\n${cols.join(',\n')}\n)`,
    `COMMENT ON TABLE ${archive} IS 'rows moved out of ${TABLE} by tsm dedupe: kept_id is the row that was kept for the same user_id'`,
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(ARCHIVE + '_id_idx')} ON ${archive} (id)`,
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(ARCHIVE + '_user_id_idx')} ON ${archive} (user_id)`,
  ].join(';\n');
}

/**
 * Creates the archive when absent; when it exists, adds the columns the table has gained since
 * (e.g. auth_error after `tsm migrate up`) and widens columns whose type changed (e.g. a session
 * column widened to text), so every row of the table fits. Returns the statements it ran.
 */
export async function ensureArchive(client: Client, shape: TableShape): Promise<string[]> {
  const existing = await columnsOf(client, shape.schema, ARCHIVE);
  const ran: string[] = [];
  if (existing.length === 0) {
    const sql = createArchiveSql(shape);
    await client.query(sql);
    ran.push(sql);
    return ran;
  }
  const archive = qualify(shape.schema, ARCHIVE);
  const have = new Map(existing.map((c) => [c.name, c.type]));
  const wanted: Column[] = [...shape.columns, { name: 'archived_at', type: 'timestamp with time zone' }, { name: 'kept_id', type: shape.idType }];
  for (const col of wanted) {
    const type = have.get(col.name);
    let sql: string | undefined;
    if (type === undefined) {
      sql = `ALTER TABLE ${archive} ADD COLUMN ${quoteIdent(col.name)} ${col.type}`;
      if (col.name === 'archived_at') sql += ' DEFAULT now()';
    } else if (type !== col.type) {
      sql = `ALTER TABLE ${archive} ALTER COLUMN ${quoteIdent(col.name)} TYPE ${col.type} USING ${quoteIdent(col.name)}::${col.type}`;
    }
    if (sql) {
      await client.query(sql);
      ran.push(sql);
    }
  }
  return ran;
}
