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
 * catalog reads while it is built, CREATE INDEX CONCURRENTLY) run with the same timeouts set on
 * the session (inside such a checked transaction) and RESET right after the migration, so a
 * pooled server connection gets back the settings it had.
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

/** A statement that runs CONCURRENTLY (never inside a transaction): it gets --index-lock-timeout. */
export function isConcurrentIndexStatement(text: string): boolean {
  return /^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX)\b[^;]*\bCONCURRENTLY\b/i.test(text);
}

/** The lock_timeout around a concurrent index statement, as sent (shown by --dry-run). */
export function aroundConcurrent(text: string, lockTimeoutMs: number, indexLockTimeoutMs: number): Statement[] {
  return [
    { text: `SET lock_timeout = '${Math.trunc(indexLockTimeoutMs)}ms'`, values: [] },
    { text, values: [] },
    { text: `SET lock_timeout = '${Math.trunc(lockTimeoutMs)}ms'`, values: [] },
  ];
}

/** The check each tsm transaction starts with: still the backend that holds the migration lock? */
const GUARD = 'SELECT pg_catalog.pg_backend_pid() AS pid';

/** How each transaction tsm opens starts: BEGIN, its timeouts (SET LOCAL), the backend check. */
export function transactionStart(lockTimeoutMs: number, readOnly = false): Statement[] {
  return [
    { text: readOnly ? 'BEGIN READ ONLY' : 'BEGIN', values: [] },
    ...setLocal(lockTimeoutMs),
    { text: GUARD, values: [] },
  ];
}

const COMMIT: Statement = { text: 'COMMIT', values: [] };

/**
 * The statements that apply a built migration, in order, as they are sent. `direct` are the
 * statements the migration ran itself while it was built (pgm.db.query: CREATE INDEX
 * CONCURRENTLY); they and a non-transactional migration's statements run with tsm's timeouts on
 * the session, RESET afterwards.
 */
export function planScript(
  schema: string,
  built: BuiltMigration,
  direct: string[],
  direction: Direction,
  file: MigrationFile,
  lockTimeoutMs: number,
  indexLockTimeoutMs: number,
): Statement[] {
  const alone = (text: string): Statement[] =>
    isConcurrentIndexStatement(text) ? aroundConcurrent(text, lockTimeoutMs, indexLockTimeoutMs) : [{ text, values: [] }];
  const mark = markSql(schema, direction, file.name, file.checksum);
  const outside = !built.transaction || direct.length > 0;
  const out: Statement[] = [];
  if (outside) out.push(...setSession(lockTimeoutMs));
  out.push(...direct.flatMap(alone));
  if (built.transaction) out.push(...transactionStart(lockTimeoutMs), ...built.statements.map((text) => ({ text, values: [] })), mark, COMMIT);
  else out.push(...built.statements.flatMap(alone), ...transactionStart(lockTimeoutMs), mark, COMMIT);
  if (outside) out.push(...RESET_SESSION);
  return out;
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
   * A migration's own statement outside a transaction: a concurrent index statement runs with
   * --index-lock-timeout (then the session's lock_timeout is tsm's again); its errors are marked so
   * that a lock timeout is named with that option and not retried (it already waited long).
   */
  private async statement(text: string, values?: unknown[]): Promise<QueryResult> {
    if (!isConcurrentIndexStatement(text)) return this.query(text, values);
    const [before, , after] = aroundConcurrent(text, this.opts.lockTimeoutMs, this.opts.indexLockTimeoutMs);
    await this.query(before!.text);
    try {
      return await this.query(text, values);
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

  private async checkPid(pid: number): Promise<void> {
    const expected = this.lockedPid ?? this.server.state.backendPid;
    if (pid === expected) return;
    await this.client.query('ROLLBACK').catch(() => {});
    throw poolerRefusal(`this session started on backend pid ${expected}, and a later transaction ran on pid ${pid}`);
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
    const r = await this.queryAll([{ text: 'BEGIN', values: [] }, ...setSession(this.opts.lockTimeoutMs), { text: GUARD, values: [] }]);
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
        const built = await buildMigration(step.mod, direction, name, db, migrationContext(this.schema, notes), step.shorthands);
        const mark = markSql(this.schema, direction, name, step.file.checksum);
        const body = built.statements;
        if (built.transaction) {
          await this.inTransaction(false, async () => {
            this.phase = 'transaction';
            for (const text of body) await this.query(text);
            await this.query(mark.text, mark.values);
          });
        } else {
          for (const text of body) await this.statement(text);
          await this.inTransaction(false, () => this.query(mark.text, mark.values));
        }
        return notes;
      } catch (err) {
        await this.rollback();
        throw err;
      } finally {
        await this.resetSessionTimeouts();
      }
    });
    this.phase = null;
    for (const n of notes) this.env.log(`tsm migrate:   ${oneLine(n)}`);
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
   * Other sessions of this database holding a lock on the table (never their query text: it may
   * hold a session string). Used to say who blocked a migration when its lock_timeout retries ran out.
   */
  async tableBlockers(table = 'telegram_sessions'): Promise<Blocker[]> {
    const r = await this.client.query<Blocker>(
      `SELECT l.pid, string_agg(DISTINCT l.mode, '+') AS mode, a.state,
              round(extract(epoch FROM now() - a.xact_start))::int AS xact_seconds
         FROM pg_catalog.pg_locks l
         LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
          AND l.relation = pg_catalog.to_regclass($1::text)
        GROUP BY l.pid, a.state, a.xact_start
        ORDER BY a.xact_start NULLS LAST
        LIMIT 5`,
      [qualify(this.schema, table)],
    );
    return r.rows;
  }

  /** INVALID indexes on the table that no build is working on (left by a failed concurrent build). */
  async invalidLeftovers(table = 'telegram_sessions'): Promise<string[]> {
    const r = await this.client.query<{ name: string }>(
      `SELECT ic.relname::text AS name
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = pg_catalog.to_regclass($1::text) AND NOT i.indisvalid
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
