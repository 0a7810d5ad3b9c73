/**
 * 0002_widen_session_columns: every session-like column (name containing "session" or
 * "telethon") declared varchar(n), directly or through a domain, becomes text. varchar → text is
 * binary-coercible: PostgreSQL changes the catalog only, without rewriting the table or its
 * indexes, so the ACCESS EXCLUSIVE lock is held for milliseconds (under lock_timeout).
 * char(n) columns are reported, not changed: char → text rewrites the whole table.
 *
 * Column names come from the catalog: quoted (ident) in SQL, plain data in notes (ctx.note).
 *
 * down: keeps the columns as text. Narrowing them back could truncate stored sessions (or fail),
 * and would bring back the incident's session_too_long; the migration is recorded as reverted.
 */
import type { MigrationBuilder } from 'node-pg-migrate';
import type { MigrationContext, ReadDb } from '../src/migrate/context.js';

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

/** The target schema: tsm's --schema; plain node-pg-migrate: the first schema of the search_path. */
async function targetSchema(db: ReadDb, ctx: MigrationContext | undefined): Promise<string> {
  if (ctx) return ctx.schema;
  const [row] = await db.select('SELECT pg_catalog.current_schema() AS s');
  if (typeof row?.s !== 'string') throw new Error('no target schema: the search_path names no existing schema');
  return row.s;
}

interface Column {
  column: string;
  type: string;
  base: string;
}

async function sessionColumns(db: ReadDb, schema: string): Promise<Column[]> {
  const rows = await db.select(
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
  return rows.map((r) => ({ column: String(r.column), type: String(r.type), base: String(r.base) }));
}

export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  const t = `${ident(schema)}.telegram_sessions`;
  const columns = await sessionColumns(pgm.db, schema);
  const widen = columns.filter((c) => c.base === 'varchar');
  for (const c of columns.filter((x) => x.base === 'bpchar')) {
    ctx?.note(`${c.column} is ${c.type}: not widened (char → text rewrites the table); do it in a maintenance window: ALTER TABLE ${t} ALTER COLUMN ${ident(c.column)} TYPE text`);
  }
  if (widen.length === 0) {
    ctx?.note('no varchar(n) session column: nothing to widen');
    return;
  }
  ctx?.note(`widening ${widen.map((c) => `${c.column} (${c.type})`).join(', ')} to text: catalog-only, no table rewrite`);
  pgm.sql(`ALTER TABLE ${t} ${widen.map((c) => `ALTER COLUMN ${ident(c.column)} TYPE text`).join(', ')}`);
}

export async function down(_pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  ctx?.note('session columns stay text: narrowing them could truncate stored sessions and bring back session_too_long');
}
