/**
 * One `tsm migrate` run's owner of its connection, its settings and its lock.
 *
 *   const session = await MigrateSession.open(env, { lockTimeoutMs });   // connect + settings
 *   await session.lock(waitMs);                                          // tsm's advisory lock
 *   const history = await session.history();                             // read under the lock
 *   … plan (plan.ts) …
 *   await session.apply(step, 'up');                                     // each migration
 *   await session.close();                                               // release, disconnect
 *
 * Everything tsm sends for a migration goes through here: the migration's own statements, the
 * `SET LOCAL` settings of its transaction, and its tsm_migrations row (bind parameters). The
 * target schema and the checksum stay in tsm's process; nothing is kept in session settings that
 * a migration would have to read back. `--dry-run` opens a read-only session (no lock) and uses
 * the same `scriptFor` to show what `apply` would send.
 */
import type { Client } from 'pg';
import { classifyError } from '../db/classify.js';
import { qualify, quoteIdent } from '../db/ident.js';
import { buildMigration, type BuildDb, type BuiltMigration, type Direction } from './build.js';
import { migrationContext, oneLine, type MigrationModule, type ReadDb } from './context.js';
import type { MigrationFile } from './files.js';
import { HISTORY_TABLE, addChecksumSql, createHistorySql, historyState, markSql, readApplied, type AppliedRow, type HistoryState, type Statement } from './history.js';
import { acquireLock, fmtMs } from './lock.js';
import { backendPid, isIndexBuild, withIndexProgress, type IndexProgressListener } from './progress.js';
import { RETRY, backoffMs, isLockFailure, sleep } from './retry.js';

/** What the migrate engine needs from its caller (the CLI passes its context; an application its own). */
export interface MigrateEnv {
  /** The target schema, unquoted. */
  readonly schema: string;
  /** A new connection (application_name tsm); throws ConnectError when it cannot connect. */
  connect(): Promise<Client>;
  /** Progress lines (the CLI writes them to stderr). */
  log(line: string): void;
  /** When set, index builds report their progress here (progress.ts; the CLI: only on a TTY). */
  progress?: IndexProgressListener;
  /** Between progress polls (default 1000 ms). */
  progressIntervalMs?: number;
}

export interface SessionOptions {
  /** lock_timeout of every statement. */
  lockTimeoutMs: number;
  /** --dry-run: every transaction READ ONLY, statement_timeout as the server has it, no lock. */
  readOnly?: boolean;
}

export interface StepResult {
  name: string;
  ms: number;
  attempts: number;
  /** What the migration decided (e.g. "an equivalent index exists: nothing to build"). */
  notes: string[];
}

/** A migration about to run: its file, its module, and the shorthands in force for it. */
export interface Step {
  file: MigrationFile;
  mod: MigrationModule;
  shorthands: Record<string, unknown> | undefined;
}

/** The statements that apply a built migration, in order, as they are sent. */
export function scriptFor(schema: string, built: BuiltMigration, direction: Direction, file: MigrationFile, lockTimeoutMs: number): Statement[] {
  const body = built.statements.map((text) => ({ text, values: [] }));
  const mark = markSql(schema, direction, file.name, file.checksum);
  if (!built.transaction) return [...body, mark];
  return [
    { text: 'BEGIN', values: [] },
    // The transaction carries its own settings (a pooled connection may not have the session's).
    { text: `SET LOCAL lock_timeout = '${Math.trunc(lockTimeoutMs)}ms'`, values: [] },
    { text: 'SET LOCAL statement_timeout = 0', values: [] },
    ...body,
    mark,
    { text: 'COMMIT', values: [] },
  ];
}

export interface Blocker {
  pid: number;
  mode: string;
  state: string | null;
  xact_seconds: number | null;
}

export class MigrateSession {
  private lockClient: Client | undefined;
  private releaseLock: (() => Promise<void>) | undefined;
  private pid: number | undefined;

  private constructor(
    readonly env: MigrateEnv,
    readonly opts: SessionOptions,
    private readonly client: Client,
  ) {}

  get schema(): string {
    return this.env.schema;
  }

  /**
   * Connects and sets what every statement of the run needs: lock_timeout, so DDL never queues
   * the application's traffic for long. A migrating session also lifts statement_timeout (a
   * concurrent index build on a large table may rightly take minutes; killing it halfway only
   * leaves an INVALID index); a read-only one keeps it and refuses every write.
   */
  static async open(env: MigrateEnv, opts: SessionOptions): Promise<MigrateSession> {
    const client = await env.connect();
    try {
      await client.query(
        `SELECT pg_catalog.set_config('lock_timeout', $1::text, false),
                ${opts.readOnly ? "pg_catalog.set_config('default_transaction_read_only', 'on', false)" : "pg_catalog.set_config('statement_timeout', '0', false)"}`,
        [`${Math.trunc(opts.lockTimeoutMs)}ms`],
      );
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    return new MigrateSession(env, opts, client);
  }

  /** tsm's advisory lock on its own idle connection (lock.ts); returns how long it waited, in ms. */
  async lock(waitMs: number): Promise<number> {
    this.lockClient = await this.env.connect();
    const lock = await acquireLock(this.lockClient, this.schema, waitMs, this.env.log);
    this.releaseLock = lock.release;
    return lock.waitedMs;
  }

  /** Whether the schema and history table exist, and what was applied (read it under the lock). */
  async history(): Promise<{ state: HistoryState; applied: AppliedRow[] }> {
    const state = await historyState(this.client, this.schema);
    const applied = state.table ? await readApplied(this.client, this.schema, state.checksumColumn) : [];
    return { state, applied };
  }

  /** The read side of the connection, as migrations and their preflight checks see it. */
  readDb(): ReadDb {
    return { select: async (sql, values) => (await this.client.query<Record<string, unknown>>(sql, values)).rows };
  }

  /** The statements that create what `up` needs before the first migration. */
  setupSql(state: HistoryState): string[] {
    const out: string[] = [];
    if (!state.schema) out.push(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`);
    if (!state.table) out.push('BEGIN', ...createHistorySql(this.schema), 'COMMIT');
    else if (!state.checksumColumn) out.push(addChecksumSql(this.schema));
    return out;
  }

  /** The schema and the history table, if absent (each step retried on lock failures). */
  async setup(state: HistoryState): Promise<void> {
    if (!state.schema) {
      await this.withRetry('create schema', () => this.client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`));
      this.env.log(`tsm migrate: created schema ${this.schema}`);
    }
    if (!state.table) {
      await this.withRetry(`create ${HISTORY_TABLE}`, async () => {
        await this.client.query('BEGIN');
        for (const sql of createHistorySql(this.schema)) await this.client.query(sql);
        await this.client.query('COMMIT');
      });
    } else if (!state.checksumColumn) {
      await this.withRetry(`add ${HISTORY_TABLE}.checksum`, () => this.client.query(addChecksumSql(this.schema)));
    }
  }

  /**
   * Builds one migration with tsm's context and sends it with its history row, retried as a whole
   * on lock failures (migrations converge: running one again is safe).
   */
  async apply(step: Step, direction: Direction): Promise<StepResult> {
    const { name } = step.file;
    this.env.log(`tsm migrate: ${direction === 'up' ? 'applying' : 'reverting'} ${name}`);
    const started = Date.now();
    const db: BuildDb = {
      query: (text, values) => this.send(text, values),
      select: async (text, values) => (await this.client.query<Record<string, unknown>>(text, values)).rows,
    };
    const { value: notes, attempts } = await this.withRetry(name, async () => {
      const notes: string[] = [];
      // Notes are shown as they are made: a long migration's steps appear while it runs.
      const onNote = (n: string): void => this.env.log(`tsm migrate:   ${oneLine(n)}`);
      const built = await buildMigration(step.mod, direction, name, db, migrationContext(this.schema, notes, { onNote }), step.shorthands);
      for (const s of scriptFor(this.schema, built, direction, step.file, this.opts.lockTimeoutMs)) {
        await this.send(s.text, s.values);
      }
      return notes;
    });
    return { name, ms: Date.now() - started, attempts, notes };
  }

  /** One statement on the migration's connection; an index build is watched when progress was asked for (progress.ts). */
  private async send(text: string, values?: unknown[]): Promise<unknown> {
    const listener = this.env.progress;
    if (!listener || !isIndexBuild(text)) return this.client.query(text, values);
    this.pid ??= await backendPid(this.client);
    const pid = this.pid;
    return withIndexProgress({ connect: () => this.env.connect(), pid, listener, intervalMs: this.env.progressIntervalMs }, () =>
      this.client.query(text, values),
    );
  }

  /** Runs fn with the retry policy; rolls back whatever transaction a failed attempt left open. */
  private async withRetry<T>(label: string, fn: () => Promise<T>): Promise<{ value: T; attempts: number }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return { value: await fn(), attempts: attempt };
      } catch (err) {
        await this.client.query('ROLLBACK').catch(() => {});
        if (!isLockFailure(err) || attempt >= RETRY.attempts) {
          if (err !== null && typeof err === 'object') (err as { tsmAttempts?: number }).tsmAttempts = attempt;
          throw err;
        }
        const pause = backoffMs(attempt);
        const why = classifyError(err).sqlstate === '40P01' ? 'deadlock' : `no lock within ${fmtMs(this.opts.lockTimeoutMs)}`;
        this.env.log(`tsm migrate: ${label}: ${why}; retrying in ${fmtMs(pause)} (attempt ${attempt + 1} of ${RETRY.attempts})`);
        await sleep(pause);
      }
    }
  }

  /**
   * Other sessions holding a lock on the table (never their query text: it may hold a session
   * string). Used to say who blocked a migration when its lock_timeout retries ran out.
   */
  async tableBlockers(table = 'telegram_sessions'): Promise<Blocker[]> {
    const r = await this.client.query<Blocker>(
      `SELECT l.pid, string_agg(DISTINCT l.mode, '+') AS mode, a.state,
              round(extract(epoch FROM now() - a.xact_start))::int AS xact_seconds
         FROM pg_catalog.pg_locks l
         LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
          AND l.relation = pg_catalog.to_regclass($1::text)
        GROUP BY l.pid, a.state, a.xact_start
        ORDER BY a.xact_start NULLS LAST
        LIMIT 5`,
      [qualify(this.schema, table)],
    );
    return r.rows;
  }

  /**
   * INVALID indexes on the table, or on its partitions, that no build is working on (left by a
   * failed concurrent build). A partitioned index that is INVALID because not every partition's
   * index is attached yet is not one of them: the next `up` completes it.
   */
  async invalidLeftovers(table = 'telegram_sessions'): Promise<string[]> {
    const r = await this.client.query<{ name: string }>(
      `SELECT ic.relname::text AS name
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        WHERE (i.indrelid = pg_catalog.to_regclass($1::text)
               OR i.indrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass($1::text)) t))
          AND ic.relkind = 'i' AND NOT i.indisvalid
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
        ORDER BY 1`,
      [qualify(this.schema, table)],
    );
    return r.rows.map((x) => x.name);
  }

  /** Disconnects, then releases the lock (and closes its connection). Never throws. */
  async close(): Promise<void> {
    await this.client.end().catch(() => {});
    if (this.releaseLock) await this.releaseLock();
    if (this.lockClient) await this.lockClient.end().catch(() => {});
  }
}

export function describeBlockers(blockers: Blocker[]): string {
  if (blockers.length === 0) return '';
  const each = blockers.map(
    (b) => `pid ${b.pid} (${b.state ?? 'unknown state'}${b.xact_seconds != null ? `, transaction open ${b.xact_seconds} s` : ''}, holds ${b.mode})`,
  );
  return `; holding locks on the table: ${each.join(', ')}`;
}
