/**
 * `tsm migrate up` / `down`: node-pg-migrate's programmatic runner underneath, one migration per
 * runner call, inside tsm's own guarantees:
 *   1. tsm's advisory lock, polled on a separate idle connection (lock.ts), bounded by --lock-wait;
 *   2. the history read only after the lock is ours (a second `up` then finds nothing to do);
 *   3. refusal when an applied migration's file changed (checksums), unless --allow-modified;
 *   4. every pending migration's preflight check before anything is touched (duplicates stop the
 *      run with nothing applied, not after three of five migrations);
 *   5. `lock_timeout` on every statement; on 55P03 / 40P01 the migration is rolled back and run
 *      again with backoff (retry.ts), a bounded number of times, then a clear error.
 * `singleTransaction: false` (explicitly): each migration commits on its own, together with its
 * row in tsm_migrations. One transaction over all of them would hold ALTER TABLE's ACCESS
 * EXCLUSIVE lock until the end, and CREATE INDEX CONCURRENTLY cannot run inside one at all.
 */
import type { Client, ClientBase } from 'pg';
import { classifyError } from '../db/classify.js';
import { quoteIdent, qualify } from '../db/ident.js';
import type { Context } from '../cli/context.js';
import { FailError } from '../errors.js';
import { IGNORE_PATTERN, listMigrations, resolveDir, silentLogger, type MigrationFile } from './files.js';
import { HISTORY_TABLE, createHistorySql, historyState, readApplied } from './history.js';
import { loadModule, loaderStrategies, type ReadDb } from './loader.js';
import { acquireLock, fmtMs } from './lock.js';
import { RETRY, backoffMs, isLockFailure, sleep } from './retry.js';
import { describeBlockers, invalidLeftovers, noteOf, prepareSession, tableBlockers } from './session.js';
import { compareStatus, type MigrationRow } from './status.js';

export interface RunOptions {
  direction: 'up' | 'down';
  /** up: how many pending to apply (undefined: all); down: how many applied to revert. */
  count: number | undefined;
  dir: string | undefined;
  lockTimeoutMs: number;
  lockWaitMs: number;
  allowModified: boolean;
}

export interface StepResult {
  name: string;
  ms: number;
  attempts: number;
  /** What the migration decided (e.g. "an equivalent index exists: nothing to build"). */
  notes: string[];
}

export interface RunResult {
  direction: 'up' | 'down';
  schema: string;
  migrations_dir: string;
  lock_waited_ms: number;
  /** The migrations this run applied (up) or reverted (down), in order. */
  steps: StepResult[];
  /** up: still pending afterwards; down: still applied afterwards. */
  remaining: string[];
  warnings: string[];
}

/** Schema names node-pg-migrate can quote: it interpolates them between " and ' without escaping. */
export function checkSchemaName(schema: string): void {
  if (/["'\\]/.test(schema)) {
    throw new FailError(`schema ${JSON.stringify(schema)}: tsm migrate cannot use a schema name containing quotes or backslashes`);
  }
}

export function errorText(err: unknown): string {
  const c = classifyError(err);
  const first = c.message.split('\n')[0] ?? '';
  // A migration's own refusal (a plain Error, or RAISE EXCEPTION → P0001) is already a sentence.
  if (c.sqlstate === null || c.sqlstate === 'P0001') return first;
  return `${first} (${c.code}, SQLSTATE ${c.sqlstate})`;
}

function cmd(schema: string, command: string): string {
  return schema === 'public' ? `tsm ${command}` : `tsm ${command} --schema ${/^[A-Za-z0-9_.-]+$/.test(schema) ? schema : `'${schema}'`}`;
}

/** The pg client as node-pg-migrate sees it: comment-only statements become notes instead of round trips. */
function runnerClient(client: Client, notes: string[]): ClientBase {
  const query = (text: unknown, values?: unknown): Promise<unknown> => {
    const sql = typeof text === 'string' ? text : (text as { text?: string } | null)?.text;
    const note = typeof sql === 'string' ? noteOf(sql) : null;
    if (note !== null) {
      notes.push(note);
      return Promise.resolve({ rows: [], rowCount: 0, command: null, fields: [] });
    }
    return (client.query as (t: unknown, v?: unknown) => Promise<unknown>)(text, values);
  };
  return { query } as unknown as ClientBase;
}

function readDb(client: Client): ReadDb {
  return { select: async (sql, values) => (await client.query(sql, values as unknown[])).rows };
}

/** Runs fn (DDL) with the retry policy; rolls back whatever transaction a failed attempt left open. */
async function withRetry<T>(
  client: Client,
  label: string,
  ctx: Context,
  lockTimeoutMs: number,
  fn: () => Promise<T>,
): Promise<{ value: T; attempts: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return { value: await fn(), attempts: attempt };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if (!isLockFailure(err) || attempt >= RETRY.attempts) {
        (err as { tsmAttempts?: number }).tsmAttempts = attempt;
        throw err;
      }
      const pause = backoffMs(attempt);
      const why = classifyError(err).sqlstate === '40P01' ? 'deadlock' : `no lock within ${fmtMs(lockTimeoutMs)}`;
      ctx.log(`tsm migrate: ${label}: ${why}; retrying in ${fmtMs(pause)} (attempt ${attempt + 1} of ${RETRY.attempts})`);
      await sleep(pause);
    }
  }
}

export async function runMigrations(ctx: Context, opts: RunOptions): Promise<RunResult> {
  const schema = ctx.schema;
  checkSchemaName(schema);
  const dir = resolveDir(opts.dir);
  const files = await listMigrations(dir);
  const byName = new Map(files.map((f) => [f.name, f]));
  const result: RunResult = {
    direction: opts.direction,
    schema,
    migrations_dir: dir,
    lock_waited_ms: 0,
    steps: [],
    remaining: [],
    warnings: [],
  };

  const lockClient = await ctx.connect();
  let client: Client | undefined;
  let release: (() => Promise<void>) | undefined;
  try {
    const lock = await acquireLock(lockClient, schema, opts.lockWaitMs, ctx.log);
    release = lock.release;
    result.lock_waited_ms = lock.waitedMs;
    client = await ctx.connect();
    await prepareSession(client, schema, opts.lockTimeoutMs);

    // Only now, under the lock, is the history read: a second `up` sees what the first applied.
    const h = await historyState(client, schema);
    const applied = h.table ? await readApplied(client, schema, h.checksumColumn) : [];
    const rows = compareStatus(files, applied);
    const named = (state: MigrationRow['state']): MigrationRow[] => rows.filter((r) => r.state === state);

    const modified = named('modified');
    if (modified.length > 0) {
      const list = modified.map((m) => `${m.name} (applied sha256 ${m.applied_checksum?.slice(0, 12)}…, file now ${m.checksum?.slice(0, 12)}…)`).join(', ');
      if (opts.direction === 'up' && !opts.allowModified) {
        throw new FailError(
          `refusing to migrate: ${modified.length === 1 ? 'an applied migration was' : `${modified.length} applied migrations were`} changed since applied: ${list}; ` +
            `\`${cmd(schema, 'migrate status')}\` lists them; --allow-modified runs anyway; nothing was applied`,
        );
      }
      result.warnings.push(`changed since applied: ${list}`);
    }
    const missing = named('missing');
    if (missing.length > 0) {
      result.warnings.push(`applied but not in ${dir}: ${missing.map((m) => m.name).join(', ')} (applied by another tsm version?)`);
    }
    for (const w of result.warnings) ctx.log(`tsm migrate: warning: ${w}`);

    if (opts.direction === 'up') {
      await up(ctx, client, opts, files, rows, h, result);
    } else {
      await down(ctx, client, opts, byName, applied.map((a) => a.name), result);
    }
    return result;
  } finally {
    if (client) await client.end().catch(() => {});
    if (release) await release();
    await lockClient.end().catch(() => {});
  }
}

async function up(
  ctx: Context,
  client: Client,
  opts: RunOptions,
  files: MigrationFile[],
  rows: MigrationRow[],
  h: { schema: boolean; table: boolean; checksumColumn: boolean },
  result: RunResult,
): Promise<void> {
  const schema = result.schema;
  const pending = rows.filter((r) => r.state === 'pending').map((r) => r.name);
  // node-pg-migrate's order rule, said plainly: nothing pending may come before something applied.
  const lastApplied = rows.reduce((i, r, idx) => (r.state !== 'pending' && r.state !== 'missing' ? idx : i), -1);
  const early = rows.slice(0, lastApplied + 1).filter((r) => r.state === 'pending');
  if (early.length > 0) {
    throw new FailError(
      `out of order: ${early.map((r) => r.name).join(', ')} ${early.length === 1 ? 'is' : 'are'} pending but ${rows[lastApplied]!.name}, which comes after, is applied; nothing was applied`,
    );
  }
  const toRun = pending.slice(0, opts.count ?? pending.length);
  result.remaining = pending.slice(toRun.length);
  if (toRun.length === 0) return;

  // Preflight every migration about to run, before touching anything (read-only).
  const db = readDb(client);
  for (const name of toRun) {
    const file = files.find((f) => f.name === name)!;
    const mod = await loadModule(file.path).catch((err: unknown) => {
      throw new FailError(`cannot load migration ${name} (${file.path}): ${errorText(err)}`);
    });
    if (typeof mod.preflight !== 'function') continue;
    try {
      await mod.preflight(db, schema);
    } catch (err) {
      throw new FailError(`${name}: ${errorText(err)}; nothing was applied`);
    }
  }

  // The schema and the history table, if absent.
  if (!h.schema) {
    await withRetry(client, 'create schema', ctx, opts.lockTimeoutMs, () => client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`));
    ctx.log(`tsm migrate: created schema ${schema}`);
  }
  if (!h.table) {
    await withRetry(client, `create ${HISTORY_TABLE}`, ctx, opts.lockTimeoutMs, async () => {
      await client.query('BEGIN');
      for (const sql of createHistorySql(schema)) await client.query(sql);
      await client.query('COMMIT');
    });
  } else if (!h.checksumColumn) {
    // A history table created by plain node-pg-migrate: add tsm's checksum column (old rows stay NULL).
    const t = qualify(schema, HISTORY_TABLE);
    await withRetry(client, `add ${HISTORY_TABLE}.checksum`, ctx, opts.lockTimeoutMs, async () => {
      await client.query(`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS checksum text`);
      await client.query(`ALTER TABLE ${t} ALTER COLUMN checksum SET DEFAULT nullif(current_setting('tsm.checksum', true), '')`);
    });
  }

  for (const name of toRun) {
    const file = files.find((f) => f.name === name)!;
    await client.query(`SELECT set_config('tsm.checksum', $1::text, false)`, [file.checksum]);
    try {
      result.steps.push(await runOne(ctx, client, opts, result, name));
    } finally {
      await client.query(`SELECT set_config('tsm.checksum', '', false)`).catch(() => {});
    }
  }
}

async function down(
  ctx: Context,
  client: Client,
  opts: RunOptions,
  byName: Map<string, MigrationFile>,
  appliedNames: string[],
  result: RunResult,
): Promise<void> {
  const toRevert = appliedNames.slice(-(opts.count ?? 1)).reverse();
  result.remaining = appliedNames.slice(0, appliedNames.length - toRevert.length);
  const noFile = toRevert.filter((n) => !byName.has(n));
  if (noFile.length > 0) {
    throw new FailError(`cannot revert ${noFile.join(', ')}: no such migration file in ${result.migrations_dir}; nothing was reverted`);
  }
  for (const name of toRevert) result.steps.push(await runOne(ctx, client, opts, result, name));
}

/** One migration through node-pg-migrate's runner, retried on lock failures. */
async function runOne(ctx: Context, client: Client, opts: RunOptions, result: RunResult, name: string): Promise<StepResult> {
  const verb = opts.direction === 'up' ? 'applying' : 'reverting';
  ctx.log(`tsm migrate: ${verb} ${name}`);
  const started = Date.now();
  let notes: string[] = [];
  const { runner } = await import('node-pg-migrate');
  try {
    const { attempts } = await withRetry(client, name, ctx, opts.lockTimeoutMs, async () => {
      notes = [];
      const ran = await runner({
        dbClient: runnerClient(client, notes),
        dir: result.migrations_dir,
        ignorePattern: IGNORE_PATTERN,
        migrationLoaderStrategies: loaderStrategies(),
        migrationsTable: HISTORY_TABLE,
        schema: result.schema,
        migrationsSchema: result.schema,
        createSchema: false,
        createMigrationsSchema: false,
        direction: opts.direction,
        file: name,
        count: 1,
        singleTransaction: false,
        noLock: true, // tsm's own lock is held (lock.ts); node-pg-migrate's would be a blocking one with 'wait'
        checkOrder: true,
        logger: process.env.TSM_DEBUG ? debugLogger(ctx) : silentLogger,
        verbose: Boolean(process.env.TSM_DEBUG),
      });
      if (ran.length !== 1 || ran[0]!.name !== name) {
        throw new Error(`node-pg-migrate ran ${ran.map((m) => m.name).join(', ') || 'nothing'} instead of ${name}`);
      }
    });
    const ms = Date.now() - started;
    for (const n of notes) ctx.log(`tsm migrate:   ${n}`);
    return { name, ms, attempts, notes };
  } catch (err) {
    throw new FailError(await failureMessage(client, opts, result, name, err, Date.now() - started));
  }
}

async function failureMessage(client: Client, opts: RunOptions, result: RunResult, name: string, err: unknown, ms: number): Promise<string> {
  const done = result.steps.map((s) => s.name);
  const doneText =
    done.length > 0 ? `; ${opts.direction === 'up' ? 'applied' : 'reverted'} before it: ${done.join(', ')}` : `; nothing was ${opts.direction === 'up' ? 'applied' : 'reverted'}`;
  let text = `${name}${opts.direction === 'down' ? ' (down)' : ''} failed: ${errorText(err).replace(/^Error loading migration files: /, 'cannot load: ')}`;
  if (isLockFailure(err)) {
    const attempts = (err as { tsmAttempts?: number }).tsmAttempts ?? RETRY.attempts;
    const blockers = await tableBlockers(client, result.schema).catch(() => []);
    text += ` — no lock within --lock-timeout ${fmtMs(opts.lockTimeoutMs)} in ${attempts} attempts over ${fmtMs(Math.round(ms / 100) * 100)}${describeBlockers(blockers)}`;
  }
  const leftovers = await invalidLeftovers(client, result.schema).catch(() => []);
  if (leftovers.length > 0) {
    text += `; INVALID index left behind: ${leftovers.join(', ')} (the next \`${cmd(result.schema, 'migrate up')}\` drops and rebuilds it)`;
  }
  return text + doneText;
}

function debugLogger(ctx: Context): typeof silentLogger {
  const out = (m: unknown): void => ctx.log(`node-pg-migrate: ${String(m)}`);
  return { debug: out, info: out, warn: out, error: out };
}
