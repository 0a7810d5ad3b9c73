/**
 * `<schema>.tsm_migrations`: node-pg-migrate's history table (id, name, run_on) plus `checksum`
 * (the SHA-256 of the file as applied). `run_on` is timestamptz (node-pg-migrate's own is a
 * zone-less timestamp; both read the same). tsm writes each row itself, with bind parameters,
 * in the same transaction as the migration: names and checksums are data, never SQL text.
 * A UNIQUE (name) makes "each migration applied once" a property of the table.
 */
import type { Client } from 'pg';
import { qualify, quoteIdent } from '../db/ident.js';

export const HISTORY_TABLE = 'tsm_migrations';

export interface AppliedRow {
  name: string;
  /** ISO 8601 */
  run_on: string;
  checksum: string | null;
}

export interface HistoryState {
  schema: boolean;
  table: boolean;
  checksumColumn: boolean;
}

/** A statement with its bind parameters. */
export interface Statement {
  text: string;
  values: unknown[];
}

/** The statements that create the table (shown by --dry-run too). */
export function createHistorySql(schema: string): string[] {
  const t = qualify(schema, HISTORY_TABLE);
  return [
    `CREATE TABLE IF NOT EXISTS ${t} (
  id       serial PRIMARY KEY,
  name     varchar(255) NOT NULL,
  run_on   timestamptz NOT NULL,
  checksum text,
  CONSTRAINT ${quoteIdent(HISTORY_TABLE + '_name_unique')} UNIQUE (name)
)`,
    `COMMENT ON TABLE ${t} IS 'tsm migrate history (node-pg-migrate format); checksum = SHA-256 of the migration file as applied'`,
  ];
}

/** A history table made by plain node-pg-migrate: tsm adds its checksum column (old rows stay NULL). */
export function addChecksumSql(schema: string): string {
  return `ALTER TABLE ${qualify(schema, HISTORY_TABLE)} ADD COLUMN IF NOT EXISTS checksum text`;
}

/** The history row of an applied migration (up) or its removal (down). */
export function markSql(schema: string, direction: 'up' | 'down', name: string, checksum: string): Statement {
  const t = qualify(schema, HISTORY_TABLE);
  return direction === 'up'
    ? { text: `INSERT INTO ${t} (name, run_on, checksum) VALUES ($1, now(), $2)`, values: [name, checksum] }
    : { text: `DELETE FROM ${t} WHERE name = $1`, values: [name] };
}

/** Whether the schema and the history table exist (read-only). */
export async function historyState(client: Client, schema: string): Promise<HistoryState> {
  const r = await client.query<{ schema: boolean; table: boolean; checksum_column: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1::text) AS schema,
            c.oid IS NOT NULL AS table,
            EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attname = 'checksum' AND a.attnum > 0 AND NOT a.attisdropped) AS checksum_column
       FROM (SELECT 1) one
       LEFT JOIN pg_catalog.pg_class c
              ON c.relname = $2::text AND c.relkind IN ('r', 'p')
             AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1::text)`,
    [schema, HISTORY_TABLE],
  );
  const row = r.rows[0]!;
  return { schema: row.schema, table: row.table, checksumColumn: row.checksum_column };
}

/** The applied migrations, in the order they were applied. */
export async function readApplied(client: Client, schema: string, checksumColumn: boolean): Promise<AppliedRow[]> {
  const t = qualify(schema, HISTORY_TABLE);
  const r = await client.query<AppliedRow>(
    `SELECT name::text AS name,
            to_char(run_on::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS run_on,
            ${checksumColumn ? 'checksum' : 'NULL::text'} AS checksum
       FROM ${t} ORDER BY run_on, id`,
  );
  return r.rows;
}
