/**
 * One `tsm migrate` run's owner of its connection, its settings and its lock.
 *
 *   const session = await MigrateSession.open(env, opts);   // connect; what kind of server, what is in between
 *   session.refusal()                                       // read-only server or transaction-mode pooler: stop here
 *   await session.lock(waitMs);                             // tsm's advisory lock, on this session
 *   const history = await session.history(true);            // read under the lock
 *   … plan (plan.ts) …
 *   await session.apply(step, 'up');                        // each migration
 *   await session.close();                                  // release the lock, disconnect
 *
 * Nothing a migration's correctness depends on lives in server session state: the target schema
 * and the checksums stay in tsm's process; every transaction tsm opens starts with `SET LOCAL` of
 * the timeouts its work needs (timeouts.ts) and then checks that it still runs on the backend that
 * holds tsm's migration lock (`pg_backend_pid()`); a pooler that moved the session is refused
 * before the transaction changes anything. A migration's statements outside a transaction (its
 * catalog reads while it is built, CREATE INDEX CONCURRENTLY, a partitioned table's ON ONLY and
 * ATTACH PARTITION steps) run with the same timeouts set on the session (inside such a checked
 * transaction) and RESET right after the migration, so a pooled server connection gets back the
 * settings it had; each such statement that changes something is sent right after the same
 * backend check, and a concurrent index statement gets --index-lock-timeout around it.
 *
 * Ctrl-C (`env.signal`): no new statement starts, and the one running is cancelled on the server
 * (`pg_cancel_backend` from a second connection, repeated until the statement has stopped).
 *
 * `--dry-run` opens a read-only session (no lock; every read in a READ ONLY transaction, so it
 * works through any pooler and on a standby) and uses `planScript` to show what `apply` would send.
 */
import type { Client, QueryResult } from 'pg';
import { classifyError } from '../db/classify.js';
import { qualify, quoteIdent, shownName } from '../db/ident.js';
import { retry, sleep } from '../db/retry.js';
import { detectPooling, readOnlyReason, readServerState, type Pooling, type ServerState } from '../db/server.js';
import { FailError, UsageError } from '../errors.js';
import { buildMigration, type BuildDb, type BuiltMigration, type Direction } from './build.js';
import { migrationContext, oneLine, type MigrationModule, type ReadDb } from './context.js';
import type { MigrationFile } from './files.js';
import {
  HISTORY_TABLE,
  addChecksumSql,
  createHistorySql,
  historyAccessProblem,
  historyState,
  markSql,
  readApplied,
  type AppliedRow,
  type HistoryState,
  type Statement,
} from './history.js';
import { Interrupted, acquireLock, fmtMs, isLockFailure, lockRetryPolicy, releaseLock } from './lock.js';

export { Interrupted } from './lock.js';
import { RESET_SESSION, readServerTimeouts, setLocal, setSession, type ServerTimeouts } from './timeouts.js';
import { backendPid, isIndexBuild, withIndexProgress, type IndexProgressListener } from './progress.js';

/** What the migrate engine needs from its caller (the CLI passes its context; an application its own). */
export interface MigrateEnv {
  /** The target schema, unquoted. */
  readonly schema: string;
  /** A new connection (application_name tsm); throws ConnectError when it cannot connect. */
  connect(): Promise<Client>;
  /** Progress lines (the CLI writes them to stderr). */
  log(line: string): void;
  /** Aborted on Ctrl-C: the running statement is cancelled on the server, nothing new starts. */
  readonly signal?: AbortSignal;
  /** When set, index builds report their progress here (progress.ts; the CLI: only on a TTY). */
  progress?: IndexProgressListener;
  /** Between progress polls (default 1000 ms). */
  progressIntervalMs?: number;
}

export interface SessionOptions {
  /** lock_timeout of every statement of a migration (except the concurrent index statements). */
  lockTimeoutMs: number;
  /**
   * lock_timeout of CREATE / DROP INDEX CONCURRENTLY and REINDEX … CONCURRENTLY: they never make
   * the application's reads or writes wait (SHARE UPDATE EXCLUSIVE), but they wait themselves for
   * transactions (in their last phase for every older snapshot in the database), and a build that
   * times out is thrown away. So they wait longer, once, and are not retried on a lock timeout.
   */
  indexLockTimeoutMs: number;
  /** Retries of a migration that could not get its lock in time (attempts = retries + 1). */
  lockRetries: number;
  /** --dry-run: every read in a READ ONLY transaction, no lock. */
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

/** The end of the transaction-mode refusal (DESIGN "Production topologies"). */
export const POOLER_ADVICE = 'looks like a transaction-mode pooler; use a direct or session-mode URL for migrations';

export function poolerRefusal(detail: string): UsageError {
  return new UsageError(`${detail}: this URL ${POOLER_ADVICE}`, { code: 'transaction_pooler', data: { pooling: 'transaction' } });
}

/**
 * A statement that runs CONCURRENTLY (never inside a transaction): it gets --index-lock-timeout.
 * CONCURRENTLY must be the option of the command itself (`CREATE [UNIQUE] INDEX CONCURRENTLY`,
 * `DROP INDEX CONCURRENTLY`, `REINDEX [(…)] INDEX|TABLE|… CONCURRENTLY`), not a word anywhere in
 * the text: a schema or index named "concurrently" must not give a blocking DROP INDEX the long
 * timeout that only a non-blocking statement may have.
 */
export function isConcurrentIndexStatement(text: string): boolean {
  return /^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|REINDEX\s*(?:\([^)]*\)\s*)?(?:INDEX|TABLE|SCHEMA|DATABASE|SYSTEM)\s+CONCURRENTLY)\b/i.test(
    text,
  );
}

/** The check tsm makes before its work: still the backend that holds the migration lock? */
const GUARD: Statement = { text: 'SELECT pg_catalog.pg_backend_pid() AS pid', values: [] };

/**
 * One statement of a migration outside a transaction, as sent: first the backend check (a pooler
 * that moved the session is refused before the statement runs); a concurrent index statement then
 * gets --index-lock-timeout, and after it the session's lock_timeout is --lock-timeout again.
 */
export function aroundDirect(text: string, lockTimeoutMs: number, indexLockTimeoutMs: number): Statement[] {
  if (!isConcurrentIndexStatement(text)) return [GUARD, { text, values: [] }];
  return [
    GUARD,
    { text: `SET lock_timeout = '${Math.trunc(indexLockTimeoutMs)}ms'`, values: [] },
    { text, values: [] },
    { text: `SET lock_timeout = '${Math.trunc(lockTimeoutMs)}ms'`, values: [] },
  ];
}

/** How each transaction tsm opens starts: BEGIN, its timeouts (SET LOCAL), the backend check. */
export function transactionStart(lockTimeoutMs: number, readOnly = false): Statement[] {
  return [{ text: readOnly ? 'BEGIN READ ONLY' : 'BEGIN', values: [] }, ...setLocal(lockTimeoutMs), GUARD];
}

const COMMIT: Statement = { text: 'COMMIT', values: [] };

/**
 * tsm's timeouts on the session, for a migration that runs statements outside a transaction: SET
 * inside a transaction that checks the backend first, so that a session a pooler moved is refused
 * (ROLLBACK) without leaving the settings on a connection that is not tsm's.
 */
export function sessionStart(lockTimeoutMs: number): Statement[] {
  return [{ text: 'BEGIN', values: [] }, ...setSession(lockTimeoutMs), GUARD, COMMIT];
}

export interface PlannedScript {
  /** The statements in order, as they are sent. */
  script: Statement[];
  /** Where each direct statement's group (its backend check, its timeout) starts in `script`. */
  directAt: number[];
  /** Where what follows the last direct statement's group starts. */
  afterDirect: number;
}

/**
 * The statements that apply a built migration, in order, as they are sent. `direct` are the
 * statements the migration ran itself while it was built (pgm.db.query: CREATE INDEX
 * CONCURRENTLY, ALTER INDEX … ATTACH PARTITION); they and a non-transactional migration's
 * statements run with tsm's timeouts on the session, each after the backend check, and the
 * session's timeouts are RESET afterwards.
 */
export function planScript(
  schema: string,
  built: BuiltMigration,
  direct: string[],
  direction: Direction,
  file: MigrationFile,
  lockTimeoutMs: number,
  indexLockTimeoutMs: number,
): PlannedScript {
  const alone = (text: string): Statement[] => aroundDirect(text, lockTimeoutMs, indexLockTimeoutMs);
  const mark = markSql(schema, direction, file.name, file.checksum);
  const outside = !built.transaction || direct.length > 0;
  const script: Statement[] = [];
  const directAt: number[] = [];
  if (outside) script.push(...sessionStart(lockTimeoutMs));
  for (const text of direct) {
    directAt.push(script.length);
    script.push(...alone(text));
  }
  const afterDirect = script.length;
  if (built.transaction) script.push(...transactionStart(lockTimeoutMs), ...built.statements.map((text) => ({ text, values: [] })), mark, COMMIT);
  else script.push(...built.statements.flatMap(alone), ...transactionStart(lockTimeoutMs), mark, COMMIT);
  if (outside) script.push(...RESET_SESSION);
  return { script, directAt, afterDirect };
}

/**
 * tsm's marks on an error (set where the statement ran), found also when a migration wrapped the
 * error in its own (`new Error(…, { cause })`, as 0004 does to name its step): copied onto the
 * outer error, so retries and messages see them.
 */
const MARKS = ['tsmConcurrent', 'tsmLockTimeoutMs', 'tsmUnderTsm'] as const;
export function adoptMarks(err: unknown): unknown {
  if (err === null || typeof err !== 'object') return err;
  const outer = err as Record<string, unknown>;
  let inner: unknown = (err as { cause?: unknown }).cause;
  for (let depth = 0; inner !== null && typeof inner === 'object' && depth < 10; depth++) {
    for (const m of MARKS) if (!(m in outer) && m in inner) outer[m] = (inner as Record<string, unknown>)[m];
    inner = (inner as { cause?: unknown }).cause;
  }
  return err;
}

export interface Blocker {
  pid: number;
  mode: string;
  state: string | null;
  xact_seconds: number | null;
}

/** What open() found out before anything else. */
export interface ServerCheck {
  state: ServerState;
  pooling: Pooling;
  /** The session's own timeouts, before tsm set anything (null: could not be read). */
  timeouts: ServerTimeouts | null;
}

export class MigrateSession {
  /** The backend that holds tsm's lock (and must run every migration), once locked. */
  private lockedPid: number | null = null;
  /** The statement in flight on the session (for Ctrl-C). */
  private busy: Promise<unknown> | null = null;
  private cancelling: Promise<void> | null = null;
  /** tsm cancelled a statement (Ctrl-C): its 57014 is ours, not a statement_timeout. */
  cancelledByTsm = false;
  /** tsm's timeouts are set on the session (a migration is running) / a tsm transaction is open. */
  private tsmSession = false;
  private tsmTx = false;
  /** Where the running migration is: its transaction is open ('transaction'), or its statements run outside one. */
  phase: 'outside' | 'transaction' | null = null;
  private readonly onAbort = (): void => {
    // Through a transaction-mode pooler the backend pid is not ours to cancel (it may be running
    // someone else's statement by now); there tsm only reads (a dry run) and simply stops.
    if (this.busy && this.server.pooling !== 'transaction') this.cancelling ??= this.cancelLoop();
  };
  /** This session's backend pid (asked once, for index-build progress). */
  private pid: number | undefined;

  private constructor(
    readonly env: MigrateEnv,
    readonly opts: SessionOptions,
    private readonly client: Client,
    readonly server: ServerCheck,
  ) {
    env.signal?.addEventListener('abort', this.onAbort);
  }

  get schema(): string {
    return this.env.schema;
  }

  get signal(): AbortSignal | undefined {
    return this.env.signal;
  }

  /** Whether the statement running now runs with tsm's timeouts (for naming a timeout that fired). */
  get underTsm(): boolean {
    return this.tsmSession || this.tsmTx;
  }

  /**
   * Connects and reads, changing nothing: whether the server is read-only (a hot standby,
   * default_transaction_read_only), whether a transaction-mode pooler is in between (a second
   * connection's transaction reaches the server connection this one just used, or this one's next
   * statement lands elsewhere), and the session's own timeouts.
   */
  static async open(env: MigrateEnv, opts: SessionOptions): Promise<MigrateSession> {
    const client = await env.connect();
    try {
      const state = await readServerState(client);
      const pooling = await detectPooling(client, state, () => env.connect());
      const timeouts = await readServerTimeouts(client).catch(() => null);
      return new MigrateSession(env, opts, client, { state, pooling, timeouts });
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
  }

  /** Why `up`/`down` cannot run through this connection (read-only server, transaction pooler), or null. */
  refusalText(): string | null {
    const ro = readOnlyReason(this.server.state);
    if (ro !== null) return ro;
    if (this.server.pooling === 'transaction') return `consecutive statements reached different server connections: this URL ${POOLER_ADVICE}`;
    return null;
  }

  /** Throws the refusal (read-only: FailError, exit 1; pooler: UsageError, exit 2), before anything is changed. */
  refuseIfNeeded(): void {
    const ro = readOnlyReason(this.server.state);
    if (ro !== null) throw new FailError(ro, { code: 'read_only' });
    if (this.server.pooling === 'transaction') throw poolerRefusal('consecutive statements reached different server connections');
  }

  /** A statement of the run: refused once Ctrl-C came; tracked so that Ctrl-C can cancel it. */
  private async query(text: string, values?: unknown[]): Promise<QueryResult> {
    if (this.env.signal?.aborted) throw new Interrupted();
    const p = this.client.query(text, values);
    this.busy = p;
    try {
      return await p;
    } catch (err) {
      // Whether the statement ran under tsm's timeouts, for naming a timeout that fired (run.ts).
      if (err !== null && typeof err === 'object' && !('tsmUnderTsm' in err)) Object.assign(err, { tsmUnderTsm: this.underTsm });
      throw err;
    } finally {
      if (this.busy === p) this.busy = null;
    }
  }

  /**
   * A statement of a migration, reporting its progress when it builds an index and the caller asked
   * for progress (progress.ts): CREATE INDEX CONCURRENTLY on a partition, REINDEX, and an index a
   * migration builds inside its transaction alike. Polled on a second connection, for this backend.
   */
  private async watched(text: string, values?: unknown[]): Promise<QueryResult> {
    const listener = this.env.progress;
    if (!listener || !isIndexBuild(text)) return this.query(text, values);
    this.pid ??= this.lockedPid ?? (await backendPid(this.client));
    return withIndexProgress({ connect: () => this.env.connect(), pid: this.pid, listener, intervalMs: this.env.progressIntervalMs }, () =>
      this.query(text, values),
    );
  }

  /**
   * A migration's own statement outside a transaction (aroundDirect): after the backend check; a
   * concurrent index statement runs with --index-lock-timeout (then the session's lock_timeout is
   * tsm's again), and its errors are marked so that a lock timeout is named with that option and
   * not retried (it already waited long).
   */
  private async statement(text: string, values?: unknown[]): Promise<QueryResult> {
    if (this.lockedPid !== null) await this.checkPid(Number((await this.query(GUARD.text)).rows[0]?.pid), 'statement');
    if (!isConcurrentIndexStatement(text)) return this.watched(text, values);
    const [, before, , after] = aroundDirect(text, this.opts.lockTimeoutMs, this.opts.indexLockTimeoutMs);
    await this.query(before!.text);
    try {
      return await this.watched(text, values);
    } catch (err) {
      if (err !== null && typeof err === 'object') Object.assign(err, { tsmConcurrent: true, tsmLockTimeoutMs: this.opts.indexLockTimeoutMs });
      throw err;
    } finally {
      await this.client.query(after!.text).catch(() => {});
    }
  }

  /** Several statements without parameters in one round trip (simple protocol); the last one's result. */
  private async queryAll(statements: Statement[]): Promise<QueryResult> {
    const r = (await this.query(statements.map((s) => s.text).join('; '))) as QueryResult | QueryResult[];
    return Array.isArray(r) ? r[r.length - 1]! : r;
  }

  /** Cancels the running statement on the server until it has stopped (Ctrl-C). */
  private async cancelLoop(): Promise<void> {
    let side: Client | undefined;
    try {
      side = await this.env.connect();
      for (let i = 0; this.busy && i < 20; i++) {
        const running = this.busy;
        this.cancelledByTsm = true;
        await side.query('SELECT pg_catalog.pg_cancel_backend($1::int)', [this.server.state.backendPid]);
        // A cancel that reaches the backend between two statements is ignored: send it again.
        await Promise.race([running.then(() => {}, () => {}), sleep(500)]);
      }
    } catch {
      // Could not connect to cancel: close() ends the connection, and the server stops the
      // statement when it notices.
    } finally {
      await side?.end().catch(() => {});
    }
  }

  /** Opens a tsm transaction and checks the backend; a pooler that moved the session is refused (ROLLBACK). */
  private async begin(readOnly = false): Promise<void> {
    const r = await this.queryAll(transactionStart(this.opts.lockTimeoutMs, readOnly));
    this.tsmTx = true;
    if (readOnly && this.lockedPid === null) return; // --dry-run: no lock to stay with
    await this.checkPid(Number(r.rows[0]?.pid));
  }

  private async checkPid(pid: number, what: 'transaction' | 'statement' = 'transaction'): Promise<void> {
    const expected = this.lockedPid ?? this.server.state.backendPid;
    if (pid === expected) return;
    if (what === 'transaction') await this.client.query('ROLLBACK').catch(() => {});
    throw poolerRefusal(`this session started on backend pid ${expected}, and a later ${what} ran on pid ${pid}`);
  }

  /** Ends a tsm transaction (COMMIT); ROLLBACK on failure is the caller's `rollback()`. */
  private async commit(): Promise<void> {
    await this.query('COMMIT');
  }

  /** Housekeeping after a failure, also after Ctrl-C: rolls back whatever transaction is open. */
  private async rollback(): Promise<void> {
    await this.client.query('ROLLBACK').catch(() => {});
  }

  /** tsm's timeouts on the session (inside a checked transaction), for statements outside a transaction. */
  private async setSessionTimeouts(): Promise<void> {
    const r = await this.queryAll(sessionStart(this.opts.lockTimeoutMs).slice(0, -1));
    await this.checkPid(Number(r.rows[0]?.pid));
    await this.commit();
    this.tsmSession = true;
  }

  /** The session's own timeouts back (RESET), also after Ctrl-C. */
  private async resetSessionTimeouts(): Promise<void> {
    await this.client.query(RESET_SESSION.map((s) => s.text).join('; ')).catch(() => {});
    this.tsmSession = false;
  }

  /** Runs `fn` in a tsm transaction (READ ONLY when asked); rolls back when it throws. */
  async inTransaction<T>(readOnly: boolean, fn: () => Promise<T>): Promise<T> {
    try {
      await this.begin(readOnly);
      const value = await fn();
      if (readOnly) await this.query('ROLLBACK');
      else await this.commit();
      return value;
    } catch (err) {
      await this.rollback();
      throw err;
    } finally {
      this.tsmTx = false;
    }
  }

  /**
   * tsm's advisory lock on this session (lock.ts); returns how long it waited, in ms. The backend
   * that took it is the one every migration must run on; should it not be the one this session
   * started on (a pooler moved it), the lock is given back and the run refused.
   */
  async lock(waitMs: number): Promise<number> {
    if (this.env.signal?.aborted) throw new Interrupted();
    const lock = await acquireLock(this.client, this.schema, waitMs, this.env.log, this.env.signal);
    if (lock.pid !== this.server.state.backendPid) {
      for (let i = 0; i < 5; i++) if (await releaseLock(this.client, this.schema, lock.pid).catch(() => false)) break;
      throw poolerRefusal(`the migration lock was taken on backend pid ${lock.pid}, but this session started on pid ${this.server.state.backendPid}`);
    }
    this.lockedPid = lock.pid;
    return lock.waitedMs;
  }

  /**
   * Whether the schema and history table exist, what was applied, and what the current role may
   * do (read it under the lock). A history table the role cannot use is refused in one line.
   */
  async history(write: boolean): Promise<{ state: HistoryState; applied: AppliedRow[] }> {
    return this.inTransaction(this.opts.readOnly === true, async () => {
      const state = await historyState(this.client, this.schema);
      const problem = historyAccessProblem(state, this.schema, write);
      if (problem !== null) throw new FailError(`${problem}${write ? '; nothing was changed' : ''}`, { code: 'permission_denied' });
      const applied = state.table ? await readApplied(this.client, this.schema, state.checksumColumn) : [];
      return { state, applied };
    });
  }

  /** The read side of the session, as migrations and their preflight checks see it. */
  readDb(): ReadDb {
    return { select: async (sql, values) => (await this.query(sql, values)).rows as Record<string, unknown>[] };
  }

  /** Runs each preflight check (read-only) in one READ ONLY transaction with tsm's timeouts. */
  async preflight<T>(fn: (db: ReadDb) => Promise<T>): Promise<T> {
    return this.inTransaction(true, () => fn(this.readDb()));
  }

  /** What `up` creates before the first migration: the schema, the history table (or its checksum column). */
  private setupStatements(state: HistoryState): Statement[] {
    const out: Statement[] = [];
    if (!state.schema) out.push({ text: `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`, values: [] });
    if (!state.table) out.push(...createHistorySql(this.schema).map((text) => ({ text, values: [] })));
    else if (!state.checksumColumn) out.push({ text: addChecksumSql(this.schema), values: [] });
    return out;
  }

  /** The same, as sent: one tsm transaction (shown by --dry-run). */
  setupSql(state: HistoryState): Statement[] {
    const body = this.setupStatements(state);
    return body.length === 0 ? [] : [...transactionStart(this.opts.lockTimeoutMs), ...body, COMMIT];
  }

  /** The schema and the history table, if absent: one transaction, retried on lock failures. */
  async setup(state: HistoryState): Promise<void> {
    const body = this.setupStatements(state);
    if (body.length === 0) return;
    await this.withRetry(`create ${state.schema ? HISTORY_TABLE : `schema ${this.schema}`}`, () =>
      this.inTransaction(false, async () => {
        for (const s of body) await this.query(s.text, s.values);
      }),
    );
    if (!state.schema) this.env.log(`tsm migrate: created schema ${this.schema}`);
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
      query: (text, values) => this.statement(text, values),
      select: async (text, values) => (await this.query(text, values)).rows as Record<string, unknown>[],
    };
    const { value: notes, attempts } = await this.withRetry(name, async () => {
      const notes: string[] = [];
      this.phase = 'outside';
      try {
        await this.setSessionTimeouts();
        // Notes are shown as they are made: a long migration's steps appear while it runs.
        const onNote = (n: string): void => this.env.log(`tsm migrate:   ${oneLine(n)}`);
        const built = await buildMigration(step.mod, direction, name, db, migrationContext(this.schema, notes, { onNote }), step.shorthands);
        const mark = markSql(this.schema, direction, name, step.file.checksum);
        const body = built.statements;
        if (built.transaction) {
          await this.inTransaction(false, async () => {
            this.phase = 'transaction';
            for (const text of body) await this.watched(text);
            await this.query(mark.text, mark.values);
          });
        } else {
          for (const text of body) await this.statement(text);
          await this.inTransaction(false, () => this.query(mark.text, mark.values));
        }
        return notes;
      } catch (err) {
        await this.rollback();
        // A migration may wrap a statement's error in its own (0004 names its step): tsm's marks
        // (a concurrent statement's lock timeout is not retried) must survive that.
        throw adoptMarks(err);
      } finally {
        await this.resetSessionTimeouts();
      }
    });
    this.phase = null;
    return { name, ms: Date.now() - started, attempts, notes };
  }

  /** Runs fn with the lock-retry policy (retries only lock failures, none after Ctrl-C). */
  private async withRetry<T>(label: string, fn: () => Promise<T>): Promise<{ value: T; attempts: number }> {
    const policy = lockRetryPolicy(this.opts.lockRetries);
    let attempts = 0;
    try {
      const value = await retry(
        (attempt) => {
          attempts = attempt;
          return fn();
        },
        {
          policy,
          signal: this.env.signal,
          // A concurrent index statement that timed out waited --index-lock-timeout already.
          retryOn: (err) => isLockFailure(err) && (err as { tsmConcurrent?: boolean }).tsmConcurrent !== true,
          onRetry: (err, attempt, delayMs) => {
            const why = classifyError(err).sqlstate === '40P01' ? 'deadlock' : `no lock within ${fmtMs(this.opts.lockTimeoutMs)}`;
            this.env.log(`tsm migrate: ${label}: ${why}; retrying in ${fmtMs(Math.round(delayMs / 100) * 100)} (attempt ${attempt + 1} of ${policy.attempts})`);
          },
        },
      );
      return { value, attempts };
    } catch (err) {
      if (err !== null && typeof err === 'object') (err as { tsmAttempts?: number }).tsmAttempts = attempts;
      throw err;
    }
  }

  /**
   * Other sessions of this database holding a lock on the table, on one of its partitions, or on
   * one of their indexes (never their query text: it may hold a session string). Used to say who
   * blocked a migration when its lock_timeout ran out.
   */
  async tableBlockers(table = 'telegram_sessions'): Promise<Blocker[]> {
    const r = await this.client.query<{ pid: number; mode: string; relname: string | null; is_index: boolean; state: string | null; xact_seconds: number | null }>(
      `WITH root AS (SELECT pg_catalog.to_regclass($1::text) AS oid),
            rels AS (SELECT root.oid AS relid FROM root
                     UNION SELECT t.relid FROM root, pg_catalog.pg_partition_tree(root.oid) t),
            watched AS (SELECT relid FROM rels UNION SELECT i.indexrelid FROM pg_catalog.pg_index i JOIN rels ON rels.relid = i.indrelid)
       SELECT l.pid, l.mode, CASE WHEN l.relation <> (SELECT oid FROM root) THEN c.relname::text END AS relname,
              c.relkind IN ('i', 'I') AS is_index, a.state,
              round(extract(epoch FROM now() - a.xact_start))::int AS xact_seconds
         FROM pg_catalog.pg_locks l
         JOIN watched w ON w.relid = l.relation
         LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation
         LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
        ORDER BY a.xact_start NULLS LAST, l.pid, c.relname NULLS FIRST, l.mode`,
      [qualify(this.schema, table)],
    );
    // A session's locks on indexes are named only when it holds none on a table (a lock on a
    // partition's index is what blocks ATTACH PARTITION; reading a table locks its indexes too).
    const onTables = new Set(r.rows.filter((x) => !x.is_index).map((x) => x.pid));
    // Modes per relation: "AccessShareLock" (the table alone), or "AccessShareLock on
    // telegram_sessions, RowExclusiveLock on telegram_sessions_p1".
    const out = new Map<number, Blocker & { on: Map<string | null, string[]> }>();
    for (const row of r.rows) {
      if (row.is_index && onTables.has(row.pid)) continue;
      const b = out.get(row.pid) ?? { pid: row.pid, mode: '', state: row.state, xact_seconds: row.xact_seconds, on: new Map<string | null, string[]>() };
      const modes = b.on.get(row.relname) ?? [];
      if (!modes.includes(row.mode)) modes.push(row.mode);
      b.on.set(row.relname, modes);
      out.set(row.pid, b);
    }
    return [...out.values()].slice(0, 5).map(({ on, ...b }) => {
      if (on.size === 1 && on.has(null)) return { ...b, mode: on.get(null)!.join('+') };
      // The same modes on several relations (a read of the parent locks every partition): said once.
      const byModes = new Map<string, string[]>();
      for (const [rel, modes] of on) byModes.set(modes.join('+'), [...(byModes.get(modes.join('+')) ?? []), oneLine(shownName(rel ?? table))]);
      const mode = [...byModes]
        .map(([modes, rels]) => `${modes} on ${rels.slice(0, 3).join(', ')}${rels.length > 3 ? ` and ${rels.length - 3} more` : ''}`)
        .join(', ');
      return { ...b, mode };
    });
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

  /** Waits for a Ctrl-C cancel to finish, releases the lock, disconnects. Never throws. */
  async close(): Promise<void> {
    this.env.signal?.removeEventListener('abort', this.onAbort);
    if (this.cancelling) await this.cancelling;
    if (this.lockedPid !== null) {
      await this.rollback();
      await releaseLock(this.client, this.schema, this.lockedPid).catch(() => false);
    }
    await this.client.end().catch(() => {});
  }
}

export function describeBlockers(blockers: Blocker[]): string {
  if (blockers.length === 0) return '';
  const each = blockers.map(
    (b) => `pid ${b.pid} (${b.state ?? 'unknown state'}${b.xact_seconds != null ? `, transaction open ${b.xact_seconds} s` : ''}, holds ${b.mode})`,
  );
  return `; holding locks on the table: ${each.join(', ')}`;
}

/** A table name for messages: schema.table, each part quoted only when it needs it. */
export function shownTable(schema: string, table: string): string {
  return `${shownName(schema)}.${shownName(table)}`;
}
