/**
 * 0001_create_table: create telegram_sessions when it is absent, with the design's columns.
 * An existing table (production databases have one) is left exactly as it is; the following
 * migrations converge it. Self-contained on purpose: a migration file imports nothing but types,
 * so it can be copied into a team's own migrations folder and still run.
 *
 * Names: the schema comes from tsm (ctx.schema) and is quoted (ident) wherever it reaches SQL;
 * decisions are reported with ctx.note (data, never SQL). Without tsm's context (plain
 * node-pg-migrate) the target is current_schema() and notes are dropped.
 *
 * down: drops the table only when it holds no rows (checked under its ACCESS EXCLUSIVE lock, so no
 * row can arrive between the check and the drop); otherwise refuses.
 */
import type { MigrationBuilder } from 'node-pg-migrate';
import type { MigrationContext, ReadDb } from '../src/migrate/context.js';

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
/** A name for messages: as typed when plain, else quoted. */
const shown = (s: string): string => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : ident(s));

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

async function tableKind(db: ReadDb, schema: string): Promise<string | null> {
  const [row] = await db.select(
    `SELECT c.relkind::text AS kind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = 'telegram_sessions'`,
    [schema],
  );
  return typeof row?.kind === 'string' ? row.kind : null;
}

const KINDS: Record<string, string> = { v: 'a view', m: 'a materialized view', f: 'a foreign table', S: 'a sequence', i: 'an index', c: 'a composite type' };

export async function preflight(db: ReadDb, schema: string): Promise<void> {
  const kind = await tableKind(db, schema);
  if (kind !== null && kind !== 'r' && kind !== 'p') {
    throw new Error(`${shown(schema)}.telegram_sessions exists but is ${KINDS[kind] ?? `a relation of kind ${kind}`}, not a table; rename it or use another --schema`);
  }
  if (kind === null) {
    const [v] = await db.select(`SELECT pg_catalog.current_setting('server_version_num')::int AS n`);
    if (Number(v?.n) < 130000) throw new Error('PostgreSQL 13 or newer is needed (gen_random_uuid() is built in from 13)');
  }
}

export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  await preflight(pgm.db, schema);
  if ((await tableKind(pgm.db, schema)) !== null) {
    ctx?.note(`${shown(schema)}.telegram_sessions exists: left as it is (the next migrations converge it)`);
    return;
  }
  pgm.sql(`CREATE TABLE IF NOT EXISTS ${ident(schema)}.telegram_sessions (
  id                 uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  tenant_id          varchar(255) NOT NULL,
  user_id            varchar(255),
  session_string_enc text,
  key_id             varchar(64),
  status             varchar(20) NOT NULL DEFAULT 'pending',
  auth_error         text,
  error_details      text,
  created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
  updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now()
)`);
}

export async function down(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm.db, ctx);
  const kind = await tableKind(pgm.db, schema);
  if (kind === null) {
    ctx?.note(`${shown(schema)}.telegram_sessions does not exist: nothing to drop`);
    return;
  }
  const t = `${ident(schema)}.telegram_sessions`;
  const [row] = await pgm.db.select(`SELECT count(*)::bigint AS n FROM ${t}`);
  const n = String(row?.n ?? '0');
  if (Number(n) > 0) {
    throw new Error(`refusing to drop ${shown(schema)}.telegram_sessions: it holds ${n} row${n === '1' ? '' : 's'}; dropping it would lose them`);
  }
  pgm.sql(`LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE`);
  // The guard names the table from the catalog (format %I), so no name is spliced into its text.
  pgm.sql(`DO ${dollarQuote(
    `DECLARE v_name text;
BEGIN
  SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) INTO v_name
    FROM ${t} x
    JOIN pg_catalog.pg_class c ON c.oid = x.tableoid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   LIMIT 1;
  IF v_name IS NOT NULL THEN
    RAISE EXCEPTION 'refusing to drop %: rows arrived while migrating down; dropping it would lose them', v_name;
  END IF;
END`,
    'guard',
  )}`);
  pgm.sql(`DROP TABLE ${t}`);
}
