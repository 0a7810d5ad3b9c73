/**
 * 0002_widen_session_columns: every session-like column (name containing "session" or
 * "telethon") declared varchar(n), directly or through a domain, becomes text. varchar → text is
 * binary-coercible: PostgreSQL changes the catalog only, without rewriting the table or its
 * indexes, so the ACCESS EXCLUSIVE lock is held for milliseconds (under lock_timeout).
 * char(n) columns are reported, not changed: char → text rewrites the whole table.
 *
 * down: keeps the columns as text. Narrowing them back could truncate stored sessions (or fail),
 * and would bring back the incident's session_too_long; the migration is recorded as reverted.
 */
import type { MigrationBuilder } from 'node-pg-migrate';

interface ReadDb {
  select(sql: string, values?: unknown[]): Promise<any[]>;
}

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

async function targetSchema(db: ReadDb): Promise<string> {
  const [row] = await db.select(`SELECT coalesce(nullif(current_setting('tsm.schema', true), ''), current_schema()) AS s`);
  if (!row?.s) throw new Error('no target schema: set tsm.schema or the search_path');
  return row.s as string;
}

interface Column {
  column: string;
  type: string;
  base: string;
}

async function sessionColumns(db: ReadDb, schema: string): Promise<Column[]> {
  return db.select(
    `SELECT a.attname::text AS column, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, b.typname::text AS base
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c     ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_type t      ON t.oid = a.atttypid
       JOIN pg_catalog.pg_type b      ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
      WHERE n.nspname = $1::text AND c.relname = 'telegram_sessions' AND c.relkind IN ('r', 'p')
        AND a.attnum > 0 AND NOT a.attisdropped
        AND (a.attname ILIKE '%session%' OR a.attname ILIKE '%telethon%')
        AND b.typname IN ('varchar', 'bpchar')
        AND (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) > 0
      ORDER BY a.attnum`,
    [schema],
  );
}

export async function up(pgm: MigrationBuilder): Promise<void> {
  const schema = await targetSchema(pgm.db);
  const columns = await sessionColumns(pgm.db, schema);
  const widen = columns.filter((c) => c.base === 'varchar');
  for (const c of columns.filter((x) => x.base === 'bpchar')) {
    pgm.sql(`-- ${c.column} is ${c.type}: not widened (char → text rewrites the table); do it in a maintenance window: ALTER TABLE ${ident(schema)}.telegram_sessions ALTER COLUMN ${ident(c.column)} TYPE text`);
  }
  if (widen.length === 0) {
    pgm.sql('-- no varchar(n) session column: nothing to widen');
    return;
  }
  pgm.sql(`-- widening ${widen.map((c) => `${c.column} (${c.type})`).join(', ')} to text: catalog-only, no table rewrite`);
  pgm.sql(`ALTER TABLE ${ident(schema)}.telegram_sessions ${widen.map((c) => `ALTER COLUMN ${ident(c.column)} TYPE text`).join(', ')}`);
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.sql('-- session columns stay text: narrowing them could truncate stored sessions and bring back session_too_long');
}
