/**
 * `<schema>.tsm_migrations`: node-pg-migrate's history table (id, name, run_on) plus `checksum`
 * (the SHA-256 of the file as applied). `run_on` is timestamptz (node-pg-migrate's own is a
 * zone-less timestamp; both read the same). tsm writes each row itself, with bind parameters,
 * in the same transaction as the migration: names and checksums are data, never SQL text.
 * A UNIQUE (name) makes "each migration applied once" a property of the table.
 */
import type { Client } from 'pg';
import { qualify, quoteIdent, shownName } from '../db/ident.js';
import { FailError } from '../errors.js';

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
  /** The role tsm runs as (current_user). */
  role: string;
  /** The owner of tsm_migrations (null when it does not exist). */
  owner: string | null;
  /** SELECT / INSERT and DELETE on tsm_migrations (true when it does not exist). */
  canRead: boolean;
  canWrite: boolean;
  /** The owner of <schema>.telegram_sessions (null when it does not exist), and whether current_user has its rights. */
  tableOwner: string | null;
  ownsTable: boolean;
  /** CREATE on the schema (when it exists) or on the database (to create the schema). */
  canCreate: boolean;
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

interface HistoryRow {
  schema: boolean;
  table: boolean;
  checksum_column: boolean;
  role: string;
  owner: string | null;
  can_read: boolean;
  can_write: boolean;
  table_owner: string | null;
  owns_table: boolean;
  can_create: boolean;
}

/**
 * Whether the schema and the history table exist, and what the current role may do with them and
 * with telegram_sessions (read-only: catalog lookups and privilege functions).
 */
export async function historyState(client: Client, schema: string): Promise<HistoryState> {
  const r = await client.query<HistoryRow>(
    `SELECT n.oid IS NOT NULL AS schema,
            c.oid IS NOT NULL AS table,
            EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attname = 'checksum' AND a.attnum > 0 AND NOT a.attisdropped) AS checksum_column,
            current_user::text AS role,
            pg_catalog.pg_get_userbyid(c.relowner)::text AS owner,
            c.oid IS NULL OR pg_catalog.has_table_privilege(c.oid, 'SELECT') AS can_read,
            c.oid IS NULL OR (pg_catalog.has_table_privilege(c.oid, 'INSERT') AND pg_catalog.has_table_privilege(c.oid, 'DELETE')) AS can_write,
            pg_catalog.pg_get_userbyid(t.relowner)::text AS table_owner,
            t.oid IS NOT NULL AND pg_catalog.pg_has_role(t.relowner, 'USAGE') AS owns_table,
            CASE WHEN n.oid IS NULL THEN pg_catalog.has_database_privilege(current_database(), 'CREATE')
                 ELSE pg_catalog.has_schema_privilege(n.oid, 'CREATE') END AS can_create
       FROM (SELECT 1) one
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1::text
       LEFT JOIN pg_catalog.pg_class c ON c.relname = $2::text AND c.relkind IN ('r', 'p') AND c.relnamespace = n.oid
       LEFT JOIN pg_catalog.pg_class t ON t.relname = 'telegram_sessions' AND t.relkind IN ('r', 'p') AND t.relnamespace = n.oid`,
    [schema, HISTORY_TABLE],
  );
  const row = r.rows[0]!;
  return {
    schema: row.schema,
    table: row.table,
    checksumColumn: row.checksum_column,
    role: row.role,
    owner: row.owner,
    canRead: row.can_read,
    canWrite: row.can_write,
    tableOwner: row.table_owner,
    ownsTable: row.owns_table,
    canCreate: row.can_create,
  };
}

/**
 * Why the current role cannot use tsm_migrations (one line naming its owner and the fix), or null.
 * `write`: up and down also insert and delete rows.
 */
export function historyAccessProblem(state: HistoryState, schema: string, write: boolean): string | null {
  if (!state.table || (state.canRead && (!write || state.canWrite))) return null;
  const table = `${shownName(schema)}.${HISTORY_TABLE}`;
  const owner = state.owner ?? '?';
  const verb = state.canRead ? 'write to' : 'read';
  return (
    `role ${state.role} cannot ${verb} ${table} (its owner is ${owner}): ` +
    `run tsm as ${shownName(owner)}, or as ${shownName(owner)} run ALTER TABLE ${table} OWNER TO ${shownName(state.role)}`
  );
}

/** historyState, refusing (FailError, one line) when the history table cannot be read. */
export async function readableHistoryState(client: Client, schema: string): Promise<HistoryState> {
  const state = await historyState(client, schema);
  const problem = historyAccessProblem(state, schema, false);
  if (problem !== null) throw new FailError(problem, { code: 'permission_denied' });
  return state;
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
