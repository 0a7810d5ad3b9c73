/**
 * 0003_diagnostic_columns: add auth_error and error_details (text, nullable) when absent. Adding a
 * nullable column without a default changes the catalog only (no rewrite); the brief ACCESS
 * EXCLUSIVE lock is taken under lock_timeout.
 *
 * down: drops the two columns only when every row has them NULL (checked under the table's
 * ACCESS EXCLUSIVE lock, in the same transaction as the drop); otherwise refuses.
 */
import type { MigrationBuilder } from 'node-pg-migrate';
import type { MigrationContext, ReadDb } from '../src/migrate/context.js';

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
/** A name for messages: as typed when plain, else quoted. */
const shown = (s: string): string => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : ident(s));
const COLUMNS = ['auth_error', 'error_details'];

/** `body` as a dollar-quoted literal whose tag occurs nowhere in it (names inside may hold `$`). */
function dollarQuote(body: string, tag: string): string {
  let t = tag;
  for (let i = 1; (body + `$${t}$`).indexOf(`$${t}$`) !== body.length; i++) t = `${tag}${i}`;
  return `$${t}$${body}$${t}$`;
}

/** The target schema: tsm's --schema; plain node-pg-migrate: the first schema of the search_path. */
async function targetSchema(db: ReadDb, ctx: MigrationContext | undefined): Promise<string> {
  if (ctx) return ctx.schema;
  const [row] = await db.select('SELECT pg_catalog.current_schema() AS s');
  if (typeof row?.s !== 'string') throw new Error('no target schema: the search_path names no existing schema');
  return row.s;
}

async function present(db: ReadDb, schema: string): Promise<string[]> {
  const rows = await db.select(
    `SELECT a.attname::text AS column
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c     ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = 'telegram_sessions'
        AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY ($2::text[])
      ORDER BY a.attnum`,
    [schema, COLUMNS],
  );
  return rows.map((r) => String(r.column));
}

export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  const have = await present(pgm.db, schema);
  const missing = COLUMNS.filter((c) => !have.includes(c));
  if (missing.length === 0) {
    ctx?.note('auth_error and error_details exist: nothing to add');
    return;
  }
  pgm.sql(`ALTER TABLE ${ident(schema)}.telegram_sessions ${missing.map((c) => `ADD COLUMN IF NOT EXISTS ${c} text`).join(', ')}`);
}

export async function down(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  const have = await present(pgm.db, schema);
  if (have.length === 0) {
    ctx?.note('auth_error and error_details do not exist: nothing to drop');
    return;
  }
  const t = `${ident(schema)}.telegram_sessions`;
  const notNull = have.map((c) => `${ident(c)} IS NOT NULL`).join(' OR ');
  const [row] = await pgm.db.select(`SELECT count(*)::bigint AS n FROM ${t} WHERE ${notNull}`);
  const n = String(row?.n ?? '0');
  if (Number(n) > 0) {
    throw new Error(
      `refusing to drop ${have.join(', ')}: ${n} row${n === '1' ? '' : 's'} of ${shown(schema)}.telegram_sessions hold${n === '1' ? 's' : ''} a value there; dropping would lose it`,
    );
  }
  pgm.sql(`LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE`);
  // The guard names the table from the catalog (format %I); the column names are this file's constants.
  pgm.sql(`DO ${dollarQuote(
    `DECLARE v_name text;
BEGIN
  SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) INTO v_name
    FROM ${t} x
    JOIN pg_catalog.pg_class c ON c.oid = x.tableoid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE ${have.map((c) => `x.${ident(c)} IS NOT NULL`).join(' OR ')}
   LIMIT 1;
  IF v_name IS NOT NULL THEN
    RAISE EXCEPTION 'refusing to drop ${have.join(', ')}: some rows of % hold a value there; dropping would lose it', v_name;
  END IF;
END`,
    'guard',
  )}`);
  pgm.sql(`ALTER TABLE ${t} ${have.map((c) => `DROP COLUMN IF EXISTS ${ident(c)}`).join(', ')}`);
}
