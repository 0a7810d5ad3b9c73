/**
 * 0001_create_table: create telegram_sessions when it is absent, with the design's columns.
 * An existing table (production databases have one) is left exactly as it is; the following
 * migrations converge it. Self-contained on purpose: a migration file imports nothing but types,
 * so it can be copied into a team's own migrations folder and still run.
 *
 * down: drops the table only when it holds no rows (checked under its ACCESS EXCLUSIVE lock, so no
 * row can arrive between the check and the drop); otherwise refuses.
 */
import type { MigrationBuilder } from 'node-pg-migrate';

interface ReadDb {
  select(sql: string, values?: unknown[]): Promise<any[]>;
}

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

/** The target schema: tsm sets `tsm.schema` (--schema); plain node-pg-migrate sets the search_path. */
async function targetSchema(db: ReadDb): Promise<string> {
  const [row] = await db.select(`SELECT coalesce(nullif(current_setting('tsm.schema', true), ''), current_schema()) AS s`);
  if (!row?.s) throw new Error('no target schema: set tsm.schema or the search_path');
  return row.s as string;
}

async function tableKind(db: ReadDb, schema: string): Promise<string | null> {
  const [row] = await db.select(
    `SELECT c.relkind::text AS kind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = 'telegram_sessions'`,
    [schema],
  );
  return (row?.kind as string | undefined) ?? null;
}

const KINDS: Record<string, string> = { v: 'a view', m: 'a materialized view', f: 'a foreign table', S: 'a sequence', i: 'an index', c: 'a composite type' };

export async function preflight(db: ReadDb, schema: string): Promise<void> {
  const kind = await tableKind(db, schema);
  if (kind !== null && kind !== 'r' && kind !== 'p') {
    throw new Error(`${schema}.telegram_sessions exists but is ${KINDS[kind] ?? `a relation of kind ${kind}`}, not a table; rename it or use another --schema`);
  }
  if (kind === null) {
    const [v] = await db.select(`SELECT current_setting('server_version_num')::int AS n`);
    if (Number(v.n) < 130000) throw new Error('PostgreSQL 13 or newer is needed (gen_random_uuid() is built in from 13)');
  }
}

export async function up(pgm: MigrationBuilder): Promise<void> {
  const schema = await targetSchema(pgm.db);
  await preflight(pgm.db, schema);
  if ((await tableKind(pgm.db, schema)) !== null) {
    pgm.sql(`-- ${schema}.telegram_sessions exists: left as it is (the next migrations converge it)`);
    return;
  }
  pgm.sql(`CREATE TABLE IF NOT EXISTS ${ident(schema)}.telegram_sessions (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id          varchar(255) NOT NULL,
  user_id            varchar(255),
  session_string_enc text,
  key_id             varchar(64),
  status             varchar(20) NOT NULL DEFAULT 'pending',
  auth_error         text,
  error_details      text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
)`);
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  const schema = await targetSchema(pgm.db);
  const kind = await tableKind(pgm.db, schema);
  if (kind === null) {
    pgm.sql(`-- ${schema}.telegram_sessions does not exist: nothing to drop`);
    return;
  }
  const t = `${ident(schema)}.telegram_sessions`;
  const [row] = await pgm.db.select(`SELECT count(*)::bigint AS n FROM ${t}`);
  if (Number(row.n) > 0) {
    throw new Error(`refusing to drop ${schema}.telegram_sessions: it holds ${row.n} row${row.n === '1' ? '' : 's'}; dropping it would lose them`);
  }
  const message = `refusing to drop ${schema}.telegram_sessions: rows arrived while migrating down; dropping it would lose them`;
  pgm.sql(`LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE`);
  pgm.sql(`DO $guard$ BEGIN
  IF EXISTS (SELECT 1 FROM ${t}) THEN RAISE EXCEPTION '%', ${literal(message)}; END IF;
END $guard$`);
  pgm.sql(`DROP TABLE ${t}`);
}

function literal(s: string): string {
  return "'" + s.replace(/'/g, "''") + "'";
}
