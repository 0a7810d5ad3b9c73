/**
 * Fleets for the test/fleet-*.test.ts files: extra databases on the test server, named after the
 * calling file's own database (createTestDatabase) so parallel test files never meet, each with
 * the pre-fix schema (optionally with duplicate user ids), dropped at the end of the file.
 */
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import pg from 'pg';
import { asAdmin, urlFor } from './db.js';
import { preFixSchema } from './fixtures.js';
import { qi } from './migrate.js';

export interface FleetDb {
  /** The database's name (also its target name when the file gives none). */
  readonly name: string;
  readonly url: string;
  sql(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

export interface FleetDbOptions {
  /** Build the pre-fix table (default true). */
  preFix?: boolean;
  /** Rows u-1 … u-rows (default 20). */
  rows?: number;
  /** That many user ids get a second row (duplicates block the unique index). */
  dupUsers?: number;
}

/** A prefix for one test's databases, unique on the server (`tsm_f_<tag>_<random>`; tag: a-z, 0-9). */
export function fleetPrefix(tag: string): string {
  return `tsm_f_${tag}_${Math.random().toString(36).slice(2, 8)}`;
}

const open = new Set<pg.Client>();
const created: string[] = [];
after(async () => {
  await Promise.all([...open].map((c) => c.end().catch(() => {})));
  if (created.length === 0) return;
  await asAdmin(async (c) => {
    for (const name of created) await c.query(`DROP DATABASE IF EXISTS ${qi(name)} WITH (FORCE)`);
  });
});

/** Creates database `name` (dropped at the end of the file) with the pre-fix schema and some rows. */
export async function fleetDatabase(name: string, o: FleetDbOptions = {}): Promise<FleetDb> {
  await asAdmin((c) => c.query(`CREATE DATABASE ${qi(name)}`));
  created.push(name);
  const url = urlFor(name);
  let client: pg.Client | undefined;
  const sql = async (text: string, values?: unknown[]): Promise<pg.QueryResult> => {
    if (!client) {
      client = new pg.Client({ connectionString: url, application_name: 'tsm-test' });
      client.on('error', () => {});
      await client.connect();
      open.add(client);
    }
    return client.query(text, values);
  };
  if (o.preFix !== false) {
    await sql(preFixSchema('public'));
    const rows = o.rows ?? 20;
    await sql(
      `INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
       SELECT 't-1', 'u-' || g, repeat(md5(g::text), 4), 'k1', 'active' FROM generate_series(1, $1::int) g
       UNION ALL
       SELECT 't-1', 'u-' || g, repeat(md5(g::text), 4), 'k1', 'active' FROM generate_series(1, $2::int) g`,
      [rows, o.dupUsers ?? 0],
    );
  }
  return { name, url, sql };
}

/** Closes a database's own test connection (before a test that counts connections). */
export async function closeAll(): Promise<void> {
  await Promise.all([...open].map((c) => c.end().catch(() => {})));
  open.clear();
}

/** What the catalog says about a database's table: columns, indexes, functions, tsm_migrations rows, rows. */
export async function catalogOf(db: FleetDb): Promise<string> {
  const r = await db.sql(
    `SELECT json_build_object(
       'columns', (SELECT json_agg(column_name || ' ' || data_type ORDER BY column_name) FROM information_schema.columns
                    WHERE table_schema = 'public' AND table_name = 'telegram_sessions'),
       'indexes', (SELECT json_agg(indexname || ': ' || indexdef ORDER BY indexname) FROM pg_indexes
                    WHERE schemaname = 'public' AND tablename = 'telegram_sessions'),
       'functions', (SELECT json_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
                    WHERE p.pronamespace = 'public'::regnamespace),
       'history', to_regclass('public.tsm_migrations') IS NOT NULL,
       'rows', (SELECT count(*) FROM public.telegram_sessions)
     )::text AS c`,
  );
  return r.rows[0].c as string;
}

/** Whether the unique index on user_id exists and is valid. */
export async function hasUniqueIndex(db: FleetDb): Promise<boolean> {
  const r = await db.sql(
    `SELECT count(*)::int AS n FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid = 'public.telegram_sessions'::regclass AND i.indisunique AND i.indisvalid AND i.indnatts = 1 AND a.attname = 'user_id'`,
  );
  return r.rows[0].n === 1;
}

/** Names in tsm_migrations, in order ([] when the table is absent). */
export async function historyOf(db: FleetDb): Promise<string[]> {
  const t = await db.sql(`SELECT to_regclass('public.tsm_migrations') IS NOT NULL AS ok`);
  if (!t.rows[0].ok) return [];
  return (await db.sql(`SELECT name FROM public.tsm_migrations ORDER BY run_on, id`)).rows.map((r) => r.name as string);
}

/** Writes a target file (in a temp folder removed at the end of the file); returns its path. */
export function targetFile(lines: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsm-fleet-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'targets.txt');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}
