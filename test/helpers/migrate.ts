/** Helpers shared by the test/migrate-*.test.ts files: running `tsm migrate`, reading catalog state. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runTsm, type RunOptions, type RunResult } from './cli.js';
import type { TestDatabase } from './db.js';
import { settle, sleep } from './wait.js';

export const SHIPPED = [
  '0001_create_table',
  '0002_widen_session_columns',
  '0003_diagnostic_columns',
  '0004_user_id_unique_index',
  '0005_upsert_function',
  '0006_harden_upsert_function',
];

/** A quoted identifier (test-side copy of src/db/ident.ts, so helpers never depend on the code under test). */
export const qi = (name: string): string => '"' + name.replace(/"/g, '""') + '"';

/** `tsm migrate <args…> -d <url>` */
export function migrate(url: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runTsm(['migrate', ...args, '-d', url], opts);
}

/** Names in <schema>.tsm_migrations, in applied order ([] when the table does not exist). */
export async function history(db: TestDatabase, schema = 'public'): Promise<string[]> {
  const t = await db.sql(`SELECT to_regclass($1) IS NOT NULL AS ok`, [`${qi(schema)}.tsm_migrations`]);
  if (!t.rows[0].ok) return [];
  return (await db.sql(`SELECT name FROM ${qi(schema)}.tsm_migrations ORDER BY run_on, id`)).rows.map((r) => r.name);
}

export interface IndexInfo {
  name: string;
  valid: boolean;
  unique: boolean;
  oid: number;
  def: string;
}

export async function indexesOf(db: TestDatabase, schema = 'public'): Promise<IndexInfo[]> {
  const r = await db.sql(
    `SELECT ic.relname AS name, i.indisvalid AS valid, i.indisunique AS unique, ic.oid::int AS oid, pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = to_regclass($1) ORDER BY ic.relname`,
    [`${qi(schema)}.telegram_sessions`],
  );
  return r.rows as IndexInfo[];
}

/** Every row of the table as text, in id order: compares rows byte for byte. */
export async function rowsText(db: TestDatabase, schema = 'public'): Promise<string[]> {
  return (await db.sql(`SELECT t::text AS r FROM ${qi(schema)}.telegram_sessions t ORDER BY id`)).rows.map((r) => r.r);
}

/**
 * `n` rows for users u-1 … u-n (800-character sessions), plus one extra row for each of the
 * first `dupUsers` users (duplicates).
 */
export async function seed(db: TestDatabase, schema: string, n: number, dupUsers = 0, tenant = 't-1'): Promise<void> {
  await db.sql(
    `INSERT INTO ${qi(schema)}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
     SELECT $1, 'u-' || g, repeat(md5(g::text), 25), 'k1', 'active' FROM generate_series(1, $2::int) g
     UNION ALL
     SELECT $1, 'u-' || g, repeat(md5('dup' || g), 25), 'k1', 'active' FROM generate_series(1, $3::int) g`,
    [tenant, n, dupUsers],
  );
}

/**
 * The catalog of a database's user schemas (relations with their storage, columns, indexes,
 * constraints, functions, comments, schemas): equal before and after means nothing was changed.
 */
export async function catalogSnapshot(db: TestDatabase): Promise<Record<string, unknown[]>> {
  const user = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'`;
  const q = async (sql: string): Promise<unknown[]> => (await db.sql(sql)).rows;
  return {
    namespaces: await q(`SELECT n.oid::int, n.nspname FROM pg_namespace n WHERE ${user} ORDER BY 1`),
    relations: await q(`SELECT c.oid::int, n.nspname, c.relname, c.relkind, c.relfilenode::int, c.relnatts
                          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${user} ORDER BY 1`),
    attributes: await q(`SELECT a.attrelid::int, a.attnum, a.attname, a.atttypid::int, a.atttypmod, a.attnotnull, a.attisdropped
                           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE ${user} AND a.attnum > 0 ORDER BY 1, 2`),
    indexes: await q(`SELECT i.indexrelid::int, i.indisvalid, i.indisready, i.indislive FROM pg_index i
                        JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${user} ORDER BY 1`),
    constraints: await q(`SELECT co.oid::int, co.conname FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE ${user} ORDER BY 1`),
    functions: await q(`SELECT p.oid::int, p.proname, md5(p.prosrc) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${user} ORDER BY 1`),
    comments: await q(`SELECT d.objoid::int, d.objsubid, d.description FROM pg_description d WHERE d.objoid >= 16384 ORDER BY 1, 2`),
    sequences: await q(`SELECT s.seqrelid::int FROM pg_sequence s ORDER BY 1`),
    types: await q(`SELECT t.oid::int, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${user} ORDER BY 1`),
  };
}

/** The last line of stderr (the `tsm: …` error line after progress lines). */
export function lastLine(text: string): string {
  const lines = text.trimEnd().split('\n');
  return lines[lines.length - 1] ?? '';
}

/** Resolves when `pred(stderr so far)` holds for the spawned child; rejects after timeoutMs. */
export function stderrWatcher(): { onSpawn: RunOptions['onSpawn']; until(pred: (s: string) => boolean, timeoutMs?: number): Promise<void> } {
  let text = '';
  const waiters: { pred: (s: string) => boolean; resolve: () => void }[] = [];
  return {
    onSpawn: (child) => {
      child.stderr?.on('data', (d: Buffer) => {
        text += d.toString();
        for (const w of waiters.splice(0)) {
          if (w.pred(text)) w.resolve();
          else waiters.push(w);
        }
      });
    },
    until: (pred, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        if (pred(text)) return resolve();
        const timer = setTimeout(() => reject(new Error(`timed out waiting; stderr so far:\n${text}`)), timeoutMs);
        waiters.push({ pred, resolve: () => (clearTimeout(timer), resolve()) });
      }),
  };
}

/**
 * Every user object of the database by name (schemas, relations with their kind, columns,
 * constraints (not PostgreSQL 18's NOT NULL entries, which follow the columns), functions with
 * their arguments, operators, types), one readable string each, sorted:
 * `objectDiff(before, after)` then says exactly what a command created or dropped.
 */
export async function userObjects(db: TestDatabase): Promise<string[]> {
  const user = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'`;
  const r = await db.sql(
    `SELECT 'schema ' || n.nspname AS o FROM pg_namespace n WHERE ${user}
     UNION ALL SELECT 'relation(' || c.relkind::text || ') ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${user}
     UNION ALL SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${user} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
     UNION ALL SELECT 'constraint ' || n.nspname || '.' || co.conname FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE ${user} AND co.contype <> 'n'
     UNION ALL SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' FROM pg_proc p
                 JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${user}
     UNION ALL SELECT 'operator ' || n.nspname || '.' || o.oprname || '(' || format_type(o.oprleft, NULL) || ', ' || format_type(o.oprright, NULL) || ')'
                 FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE ${user}
     UNION ALL SELECT 'type ' || n.nspname || '.' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE ${user} AND t.typtype NOT IN ('c') AND t.typelem = 0 AND t.typrelid = 0
     ORDER BY 1`,
  );
  return r.rows.map((x) => x.o as string);
}

export function objectDiff(before: string[], after: string[]): { added: string[]; removed: string[] } {
  const b = new Set(before);
  const a = new Set(after);
  return { added: after.filter((o) => !b.has(o)), removed: before.filter((o) => !a.has(o)) };
}

/** Relations and functions whose name starts with "pwned" (what an injected statement would create). */
export async function pwned(db: TestDatabase): Promise<string[]> {
  const r = await db.sql(
    `SELECT n.nspname || '.' || c.relname AS o FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname LIKE 'pwned%'
     UNION ALL SELECT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname LIKE 'pwned%'
     ORDER BY 1`,
  );
  return r.rows.map((x) => x.o as string);
}

/** What `up` adds to a schema whose table exists (pre-fix): history table, columns, index, functions. */
export function upAdds(schema: string, opts: { index?: boolean; columns?: boolean } = {}): string[] {
  const out = [
    `column ${schema}.tsm_migrations.checksum`,
    `column ${schema}.tsm_migrations.id`,
    `column ${schema}.tsm_migrations.name`,
    `column ${schema}.tsm_migrations.run_on`,
    `constraint ${schema}.tsm_migrations_name_unique`,
    `constraint ${schema}.tsm_migrations_pkey`,
    `function ${schema}.upsert_telegram_session(p_tenant_id character varying, p_user_id bigint, p_session_string_enc text, p_key_id character varying, p_status character varying, p_auth_error text, p_error_details text)`,
    `function ${schema}.upsert_telegram_session(p_tenant_id character varying, p_user_id character varying, p_session_string_enc text, p_key_id character varying, p_status character varying, p_auth_error text, p_error_details text)`,
    `relation(S) ${schema}.tsm_migrations_id_seq`,
    `relation(i) ${schema}.tsm_migrations_name_unique`,
    `relation(i) ${schema}.tsm_migrations_pkey`,
    `relation(r) ${schema}.tsm_migrations`,
  ];
  if (opts.columns !== false) out.push(`column ${schema}.telegram_sessions.auth_error`, `column ${schema}.telegram_sessions.error_details`);
  if (opts.index !== false) out.push(`relation(i) ${schema}.telegram_sessions_user_id_unique`);
  return out.sort();
}

/** SHA-256 of a shipped migration as tsm checksums it (dist/migrations/<name>.js, CRLF → LF). */
export function shippedChecksum(name: string): string {
  const file = fileURLToPath(new URL(`../../migrations/${name}.js`, import.meta.url));
  return createHash('sha256').update(readFileSync(file, 'utf8').replace(/\r\n/g, '\n'), 'utf8').digest('hex');
}

/** name → checksum recorded in <schema>.tsm_migrations. */
export async function recordedChecksums(db: TestDatabase, schema = 'public'): Promise<Record<string, string | null>> {
  const r = await db.sql(`SELECT name, checksum FROM ${qi(schema)}.tsm_migrations ORDER BY run_on, id`);
  return Object.fromEntries(r.rows.map((x) => [x.name as string, x.checksum as string | null]));
}

/** Advisory locks held in this database (by anyone), as "pid:classid:objid". */
export async function advisoryLocks(db: TestDatabase): Promise<string[]> {
  const r = await db.sql(
    `SELECT l.pid, l.classid, l.objid FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      ORDER BY 1, 2, 3`,
  );
  return r.rows.map((x) => `${x.pid}:${x.classid}:${x.objid}`);
}

export interface WriterStats {
  writes: number;
  /** The longest single write, in ms. */
  maxMs: number;
  /** When (ms since the writers started) that longest write started. */
  maxAtMs: number;
  /** Error codes (SQLSTATE or message) of failed writes, at most 20. */
  errors: string[];
}

export interface Writers {
  /** Writes so far. */
  readonly writes: number;
  /** Stops the loops, closes the connections, and returns what they saw. */
  stop(): Promise<WriterStats>;
}

/**
 * `n` application writers, each on its own connection to `url`, inserting one row (a 268-character
 * session) at a time into <schema>.telegram_sessions, `pauseMs` apart, timing every write.
 * Rows use the tenant 't-writer' and user ids 'w-<writer>-<k>'.
 */
export async function startWriters(url: string, schema: string, n: number, opts: { pauseMs?: number } = {}): Promise<Writers> {
  const pauseMs = opts.pauseMs ?? 5;
  const clients: pg.Client[] = [];
  for (let i = 0; i < n; i++) {
    const c = new pg.Client({ connectionString: url, application_name: 'tsm-test-writer' });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
  }
  const started = Date.now();
  const stats: WriterStats = { writes: 0, maxMs: 0, maxAtMs: 0, errors: [] };
  let stopping = false;
  const sql = `INSERT INTO ${qi(schema)}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status) VALUES ('t-writer', $1, repeat('A', 268), 'k1', 'active')`;
  const loops = clients.map((c, i) =>
    settle(
      (async () => {
        for (let k = 0; !stopping; k++) {
          const t0 = Date.now();
          try {
            await c.query(sql, [`w-${i}-${k}`]);
            stats.writes++;
          } catch (err) {
            if (stats.errors.length < 20) stats.errors.push(String((err as { code?: string }).code ?? (err as Error).message));
          }
          const ms = Date.now() - t0;
          if (ms > stats.maxMs) {
            stats.maxMs = ms;
            stats.maxAtMs = t0 - started;
          }
          if (pauseMs > 0) await sleep(pauseMs);
        }
      })(),
    ),
  );
  return {
    get writes() {
      return stats.writes;
    },
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      return stats;
    },
  };
}
