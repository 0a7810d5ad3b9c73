/**
 * `tsm migrate up --dry-run`: the SQL each pending migration would run, and nothing changed at
 * all — no advisory lock, no schema, no tsm_migrations table (node-pg-migrate's own dryRun still
 * takes its lock and creates its table, so it is not used).
 *
 * Each pending migration's `up(pgm)` runs against node-pg-migrate's own MigrationBuilder whose
 * database records instead of executing: `pgm.db.query` (the statements a migration runs
 * directly, e.g. CREATE INDEX CONCURRENTLY) and `pgm.sql` steps are collected, while
 * `pgm.db.select` (the migration's introspection) really runs, on a session where every
 * transaction is READ ONLY, so even a mistaken write would fail instead of changing anything.
 */
import type { Client } from 'pg';
import { quoteIdent, qualify, quoteLiteral } from '../db/ident.js';
import type { Context } from '../cli/context.js';
import { listMigrations, resolveDir, silentLogger } from './files.js';
import { HISTORY_TABLE, createHistorySql, historyState, readApplied } from './history.js';
import { loadModule, type ReadDb } from './loader.js';
import { checkSchemaName, errorText } from './run.js';
import { noteOf, prepareSession } from './session.js';
import { compareStatus } from './status.js';

export interface PlannedMigration {
  name: string;
  /** Whether it runs in a transaction (with its tsm_migrations row). */
  transaction: boolean;
  /** Statements in order, comments included (notes start with `--`). */
  sql: string[];
  /** Why the real run would stop here (its preflight check), or null. */
  would_stop: string | null;
}

export interface DryRunResult {
  dry_run: true;
  schema: string;
  migrations_dir: string;
  /** Statements `up` would run before the first migration (schema, history table). */
  setup: string[];
  migrations: PlannedMigration[];
  /** Set when the real `up` would refuse before applying anything (modified files, a failing preflight). */
  refusal: string | null;
  /** Applied already (not shown). */
  applied: number;
}

export async function planUp(ctx: Context, opts: { count: number | undefined; dir: string | undefined; lockTimeoutMs: number; allowModified: boolean }): Promise<DryRunResult> {
  const schema = ctx.schema;
  checkSchemaName(schema);
  const dir = resolveDir(opts.dir);
  const files = await listMigrations(dir);
  const client = await ctx.connect();
  try {
    await prepareSession(client, schema, opts.lockTimeoutMs, true);
    const h = await historyState(client, schema);
    const applied = h.table ? await readApplied(client, schema, h.checksumColumn) : [];
    const rows = compareStatus(files, applied);
    const result: DryRunResult = {
      dry_run: true,
      schema,
      migrations_dir: dir,
      setup: [],
      migrations: [],
      refusal: null,
      applied: rows.filter((r) => r.state === 'applied' || r.state === 'modified').length,
    };
    const modified = rows.filter((r) => r.state === 'modified');
    if (modified.length > 0 && !opts.allowModified) {
      result.refusal = `applied migrations changed since applied: ${modified.map((m) => m.name).join(', ')} (up refuses without --allow-modified)`;
    }
    const pending = rows.filter((r) => r.state === 'pending').map((r) => r.name);
    const toRun = pending.slice(0, opts.count ?? pending.length);
    if (toRun.length === 0) return result;

    if (!h.schema) result.setup.push(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    if (!h.table) result.setup.push('BEGIN', ...createHistorySql(schema), 'COMMIT');
    else if (!h.checksumColumn) {
      const t = qualify(schema, HISTORY_TABLE);
      result.setup.push(
        `ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS checksum text`,
        `ALTER TABLE ${t} ALTER COLUMN checksum SET DEFAULT nullif(current_setting('tsm.checksum', true), '')`,
      );
    }
    result.setup = result.setup.map(terminate);

    for (const name of toRun) {
      const file = files.find((f) => f.name === name)!;
      result.migrations.push(await planOne(client, schema, name, file.path));
    }
    const stop = result.migrations.find((m) => m.would_stop !== null);
    if (stop && result.refusal === null) result.refusal = `${stop.name}: ${stop.would_stop}`;
    return result;
  } finally {
    await client.end().catch(() => {});
  }
}

/** A statement as it would be sent, `;`-terminated; a note as a plain `-- …` line. */
function terminate(sql: string): string {
  const t = sql.trimEnd();
  const note = noteOf(t);
  if (note !== null) return `-- ${note}`;
  return t.endsWith(';') ? t : t + ';';
}

async function planOne(client: Client, schema: string, name: string, path: string): Promise<PlannedMigration> {
  const planned: PlannedMigration = { name, transaction: true, sql: [], would_stop: null };
  const read: ReadDb = { select: async (sql, values) => (await client.query(sql, values as unknown[])).rows };
  let mod;
  try {
    mod = await loadModule(path);
  } catch (err) {
    planned.would_stop = `cannot load ${path}: ${errorText(err)}`;
    return planned;
  }
  if (typeof mod.preflight === 'function') {
    try {
      await mod.preflight(read, schema);
    } catch (err) {
      planned.would_stop = errorText(err);
      return planned;
    }
  }
  if (typeof mod.up !== 'function') {
    planned.would_stop = `${path} exports no up(pgm) function`;
    return planned;
  }
  const direct: string[] = [];
  const recordingDb = {
    query: async (text: unknown) => {
      direct.push(typeof text === 'string' ? text : String((text as { text?: unknown })?.text ?? text));
      return { rows: [], rowCount: 0, command: null, fields: [] };
    },
    select: read.select,
  };
  const { MigrationBuilder } = await import('node-pg-migrate');
  const pgm = new MigrationBuilder(recordingDb as never, mod.shorthands as never, false, silentLogger);
  try {
    await mod.up(pgm);
  } catch (err) {
    planned.would_stop = errorText(err);
    return planned;
  }
  planned.transaction = pgm.isUsingTransaction();
  const body = [...direct, ...pgm.getSqlSteps()].map(terminate);
  const mark = `INSERT INTO ${qualify(schema, HISTORY_TABLE)} (name, run_on) VALUES (${quoteLiteral(name)}, NOW());   -- checksum recorded by its column default`;
  planned.sql = planned.transaction ? ['BEGIN;', ...body, mark, 'COMMIT;'] : [...body, mark];
  return planned;
}
