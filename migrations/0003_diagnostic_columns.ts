/**
 * 0003_diagnostic_columns: add auth_error and error_details (text, nullable) when absent. Adding a
 * nullable column without a default changes the catalog only (no rewrite); the brief ACCESS
 * EXCLUSIVE lock is taken under lock_timeout.
 *
 * down: drops the two columns only when every row has them NULL (checked under the table's
 * ACCESS EXCLUSIVE lock, in the same transaction as the drop); otherwise refuses.
 */
import type { MigrationBuilder } from 'node-pg-migrate';

interface ReadDb {
  select(sql: string, values?: unknown[]): Promise<any[]>;
}

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
const COLUMNS = ['auth_error', 'error_details'];

async function targetSchema(db: ReadDb): Promise<string> {
  const [row] = await db.select(`SELECT coalesce(nullif(current_setting('tsm.schema', true), ''), current_schema()) AS s`);
  if (!row?.s) throw new Error('no target schema: set tsm.schema or the search_path');
  return row.s as string;
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
  return rows.map((r) => r.column as string);
}

export async function up(pgm: MigrationBuilder): Promise<void> {
  const schema = await targetSchema(pgm.db);
  const have = await present(pgm.db, schema);
  const missing = COLUMNS.filter((c) => !have.includes(c));
  if (missing.length === 0) {
    pgm.sql('-- auth_error and error_details exist: nothing to add');
    return;
  }
  pgm.sql(`ALTER TABLE ${ident(schema)}.telegram_sessions ${missing.map((c) => `ADD COLUMN IF NOT EXISTS ${c} text`).join(', ')}`);
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  const schema = await targetSchema(pgm.db);
  const have = await present(pgm.db, schema);
  if (have.length === 0) {
    pgm.sql('-- auth_error and error_details do not exist: nothing to drop');
    return;
  }
  const t = `${ident(schema)}.telegram_sessions`;
  const notNull = have.map((c) => `${c} IS NOT NULL`).join(' OR ');
  const [row] = await pgm.db.select(`SELECT count(*)::bigint AS n FROM ${t} WHERE ${notNull}`);
  const refuse = (n: string): string =>
    `refusing to drop ${have.join(', ')}: ${n} row${n === '1' ? '' : 's'} of ${schema}.telegram_sessions hold${n === '1' ? 's' : ''} a value there; dropping would lose it`;
  if (Number(row.n) > 0) throw new Error(refuse(String(row.n)));
  pgm.sql(`LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE`);
  pgm.sql(`DO $guard$ BEGIN
  IF EXISTS (SELECT 1 FROM ${t} WHERE ${notNull}) THEN
    RAISE EXCEPTION '%', ${literal(refuse('some'))};
  END IF;
END $guard$`);
  pgm.sql(`ALTER TABLE ${t} ${have.map((c) => `DROP COLUMN IF EXISTS ${c}`).join(', ')}`);
}

function literal(s: string): string {
  return "'" + s.replace(/'/g, "''") + "'";
}
