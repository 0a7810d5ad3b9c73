/**
 * SessionStore: what the API and the ingest service call instead of hand-written SQL.
 *
 *   const store = new SessionStore({ connectionString: process.env.DATABASE_URL });
 *   const r = await store.save({ tenantId, userId, sessionStringEnc, keyId, status: 'authorized' });
 *   if (!r.ok) log.warn(`session not saved: ${r.code}`);   // r.code: the classified error code
 *
 * save() never throws for database errors: it returns `{ ok: false, code, retryable, sqlstate,
 * details }` (codes: classifyError's table). Retryable codes are retried with bounded exponential
 * backoff and jitter. Input is validated before the database is touched. A session string is
 * never logged, never put into an error or a metric label: only its length.
 *
 * Every save settles within its deadline (`saveTimeoutMs`, all attempts and pauses included):
 * getting a connection is bounded by `connectTimeoutMs`, and a statement still running at the
 * deadline is cancelled on the server (a CancelRequest, as libpq's PQcancel) and its connection
 * destroyed when the server does not answer the cancel either, so no pool slot is lost.
 *
 * Transaction-mode poolers (PgBouncer before 1.21, RDS Proxy, Supavisor) run consecutive
 * statements on different server connections, where named prepared statements do not exist or
 * already exist (42P05, 26000: prepared_statement_conflict). The statement did not run then: the
 * store runs it again unnamed and stays unnamed from then on (`preparedStatements: false` starts
 * unnamed).
 */
import { connect as netConnect } from 'node:net';
import pg from 'pg';
import type { Pool, PoolClient, PoolConfig } from 'pg';
import type { Registry } from 'prom-client';
import { classifyError, type ErrorCode } from '../db/classify.js';
import { resolvePg, type PgConfigOptions } from '../db/resolve.js';
import { backoffDelay, retryPolicy, sleep, type RetryOptions, type RetryPolicy } from '../db/retry.js';
import { Watch, type Watched } from './deadline.js';
import { createSessionMetrics, type SessionMetrics } from './metrics.js';
import { savePoolConfig } from './pool.js';
import { upsertQuery, upsertStatements, VIAS, type UpsertQuery, type UpsertRow, type UpsertStatements, type Via } from './sql.js';
import { UpsertCall } from './upsert-call.js';

export type { Via } from './sql.js';
export type { RetryOptions } from '../db/retry.js';

export interface SaveInput {
  tenantId: string;
  /**
   * Telegram user id: text, or an integer (Telethon's `me.id`: a safe integer or a bigint), stored
   * as its decimal text. Required (a pending row without a user is not a session).
   */
  userId: string | number | bigint;
  /** The encrypted session string. Never logged. */
  sessionStringEnc: string;
  /** Id of the key that encrypted it (null allowed). */
  keyId: string | null;
  /** Default 'pending'. */
  status?: string;
  /** Classified code of the last failure; the function clears it when omitted. */
  authError?: string | null;
  errorDetails?: string | null;
}

export interface SaveOk {
  ok: true;
  /** The row's id (uuid): the same id on every later save of the same user. */
  id: string;
  /** Database attempts it took (1 unless retried). */
  attempts: number;
}

export interface SaveFailure {
  ok: false;
  code: ErrorCode;
  retryable: boolean;
  /**
   * The SQLSTATE (or Node socket code); null when the server said nothing: input validation
   * rejected the save, or the store's own deadline ran out (`details` says which).
   */
  sqlstate: string | null;
  /** The server's or driver's one-line message; never contains the session string. */
  details: string;
  /** Database attempts made (0 when input validation rejected the save). */
  attempts: number;
}

export type SaveResult = SaveOk | SaveFailure;

/** What the logger hook receives: user id, session length and outcome only. */
export interface SaveLogEvent {
  userId: string | null;
  length: number | null;
  /** 'saved', or the error code of the final failure. */
  outcome: 'saved' | ErrorCode;
}

export interface SessionStoreOptions {
  /** A pg Pool of yours: SessionStore uses it and never ends it. */
  pool?: Pool;
  /**
   * Or a connection string (a postgres:// URL or libpq `key=value` words), resolved the way libpq
   * and the tsm CLI resolve it (sslmode, sslrootcert, service, PG* variables, ~/.pgpass,
   * connect_timeout); SessionStore builds its own pool (application_name 'tsm') and ends it in
   * close(). With neither pool nor connectionString, the PG* environment alone.
   */
  connectionString?: string;
  /** Extra settings for the pool SessionStore builds (max, ssl, …); they win over the resolved ones. */
  poolConfig?: PoolConfig;
  /** Where PG* variables, PGSERVICEFILE, PGPASSFILE and HOME are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Schema of telegram_sessions and upsert_telegram_session (default 'public'). */
  schema?: string;
  /** 'function' (default): upsert_telegram_session(); 'statement': INSERT … ON CONFLICT directly. */
  via?: Via;
  retry?: RetryOptions;
  /** prom-client registry for the metrics (default: a new one, never the global registry). */
  registry?: Registry;
  /** false: no metrics at all (prom-client is then never loaded). */
  metrics?: boolean;
  /** Called once per save with user id, length and outcome. Exceptions it throws are ignored. */
  logger?: (event: SaveLogEvent) => void;
  /**
   * Named prepared statements (default true: parsed once per connection). Behind a
   * transaction-mode pooler the store notices the first conflict and goes unnamed by itself;
   * false starts unnamed.
   */
  preparedStatements?: boolean;
  /**
   * Longest wait for a connection, per attempt, in ms. Default: poolConfig.connectionTimeoutMillis,
   * else the connection string's connect_timeout, else PGCONNECT_TIMEOUT, else 10 s (a pool you
   * pass: its connectionTimeoutMillis, else 10 s).
   */
  connectTimeoutMs?: number;
  /** Every save settles within this many ms, all attempts and pauses included (default 15 s). */
  saveTimeoutMs?: number;
}

export interface SaveOptions {
  /** Stops retrying (the attempt in flight still completes, within the deadline). */
  signal?: AbortSignal;
  /** This save's deadline in ms (default: the store's saveTimeoutMs). */
  timeoutMs?: number;
}

export const DEFAULT_SAVE_TIMEOUT_MS = 15_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** After a cancel at the deadline, how long the server gets to answer before the connection is destroyed. */
const CANCEL_GRACE_MS = 2_000;
/** An attempt needs at least this much of the deadline left to be worth starting. */
const MIN_ATTEMPT_MS = 5;

const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';
const optionalText = (v: unknown): boolean => v === undefined || v === null || typeof v === 'string';

/** The user id as the text stored in user_id, or null when it is not an acceptable id. */
function userIdText(v: unknown): string | null {
  if (typeof v === 'string') return v.trim() === '' ? null : v;
  if (typeof v === 'number') return Number.isSafeInteger(v) ? String(v) : null;
  if (typeof v === 'bigint') return v.toString();
  return null;
}

/** Input problems, checked before the database is touched; null when the input is fine. */
export function validateSaveInput(input: unknown): string | null {
  if (input === null || typeof input !== 'object') return 'save() expects an object';
  const i = input as Record<string, unknown>;
  if (!nonEmpty(i.tenantId)) return 'tenantId must be a non-empty string';
  if (userIdText(i.userId) === null) {
    if (typeof i.userId === 'number') {
      return Number.isInteger(i.userId)
        ? `userId ${i.userId} is beyond Number.MAX_SAFE_INTEGER and may already be rounded: pass it as a bigint or a string`
        : `userId must be an integer, got ${i.userId}`;
    }
    return 'userId must be a non-empty string, a safe integer or a bigint';
  }
  if (typeof i.sessionStringEnc !== 'string' || i.sessionStringEnc === '') return 'sessionStringEnc must be a non-empty string';
  if (!optionalText(i.keyId)) return 'keyId must be a string or null';
  if (i.status !== undefined && !nonEmpty(i.status)) return 'status must be a non-empty string when given';
  if (!optionalText(i.authError)) return 'authError must be a string or null when given';
  if (!optionalText(i.errorDetails)) return 'errorDetails must be a string or null when given';
  return null;
}

const firstLine = (s: string): string => s.split('\n')[0] ?? '';

function positiveMs(name: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isFinite(v) || v <= 0 || v > 2_147_483_647) throw new RangeError(`SessionStore: ${name} must be a positive number of ms, got ${v}`);
  return v;
}

/** pg keeps these from BackendKeyData (not in its typings); the cancel key of the connection. */
interface CancelKey {
  processID?: number | null;
  secretKey?: number | null;
}

/**
 * libpq's PQcancel: a CancelRequest on a new connection to the same server (or pooler, which
 * forwards it). Best effort: errors are ignored, and the socket is destroyed after `timeoutMs`.
 */
function sendCancel(client: PoolClient, timeoutMs: number): void {
  const { processID, secretKey } = client as unknown as CancelKey;
  if (typeof processID !== 'number' || typeof secretKey !== 'number') return;
  const host = client.host || 'localhost';
  const port = client.port || 5432;
  const socket = host.startsWith('/') ? netConnect(`${host}/.s.PGSQL.${port}`) : netConnect(port, host);
  const msg = Buffer.alloc(16);
  msg.writeInt32BE(16, 0);
  msg.writeInt32BE(80877102, 4); // the cancel request code
  msg.writeInt32BE(processID, 8);
  msg.writeInt32BE(secretKey, 12);
  socket.on('error', noop);
  socket.setTimeout(timeoutMs, () => socket.destroy());
  socket.once('connect', () => socket.end(msg));
  socket.unref();
}

/** Getting a connection failed without a SQLSTATE: connection_error. */
class ConnectFailure extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
  }
}

/** A deadline of the store's own (not the server's): connect or statement. */
class Deadline extends Error {
  constructor(
    readonly phase: 'connect' | 'statement',
    message: string,
  ) {
    super(message);
  }
}

const noop = (): void => {};
const NO_OPTIONS: SaveOptions = Object.freeze({});

function isPreparedConflict(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === '42P05' || code === '26000';
}

/** What one save() call carries through its attempts. */
class SaveJob {
  attempts = 0;
  private t0 = 0;

  constructor(
    readonly engine: Engine,
    readonly input: SaveInput,
    readonly row: UpsertRow,
    readonly q: UpsertQuery,
    readonly deadline: number,
    readonly budget: number,
    private readonly signal: AbortSignal | undefined,
    private readonly metrics: SessionMetrics | null,
    private readonly resolve: (r: SaveResult) => void,
  ) {}

  /** Starts the next attempt. */
  next(): void {
    this.attempts++;
    this.t0 = performance.now();
    this.run(this.engine.prepared, this.t0);
  }

  /** Runs (or, after a pooler conflict, re-runs unnamed) the current attempt. */
  run(named: boolean, now = performance.now()): void {
    const left = this.deadline - now;
    if (left < 1) {
      this.attemptDone(new Deadline('statement', `no time left in the save's deadline (${Math.round(this.budget)} ms)`), null);
      return;
    }
    const connectMs = Math.min(this.engine.connectTimeoutMs, left);
    new Attempt(this, named, now + connectMs, connectMs).start();
  }

  attemptDone(err: unknown, id: string | null): void {
    const engine = this.engine;
    const r: SaveResult = err
      ? engine.failure(err, this.attempts)
      : id !== null
        ? { ok: true, id, attempts: this.attempts }
        : engine.noId(this.row, this.attempts);
    this.metrics?.observe(r.ok ? 'success' : 'failed', (performance.now() - this.t0) / 1000, r.ok ? undefined : r.code);
    if (r.ok || !r.retryable || this.attempts >= engine.retry.attempts || this.signal?.aborted || engine.closed) {
      this.end(r);
      return;
    }
    const delay = backoffDelay(this.attempts, engine.retry);
    // No time left for the pause and another attempt: the deadline is the contract.
    if (performance.now() + delay + MIN_ATTEMPT_MS >= this.deadline) {
      this.end(r);
      return;
    }
    void sleep(delay, this.signal).then(() => (this.signal?.aborted ? this.end(r) : this.next()));
  }

  end(r: SaveResult): void {
    this.resolve(this.engine.logger ? this.engine.log(this.input, r) : r);
  }
}

/** One database attempt: get a connection, run the upsert, hand the connection back. */
class Attempt implements Watched {
  due: number;
  private client: PoolClient | undefined;
  private release: ((err?: Error | boolean) => void) | undefined;
  private inFlight = false;
  private done = false;
  private abandoned = false;

  constructor(
    private readonly job: SaveJob,
    private readonly named: boolean,
    connectBy: number,
    private readonly connectMs: number,
  ) {
    this.due = connectBy;
  }

  start(): void {
    const engine = this.job.engine;
    engine.watch.add(this);
    engine.pool.connect((err, c, rel) => this.connected(err, c, rel));
  }

  private connected(err: Error | undefined, c: PoolClient | undefined, rel: (err?: Error | boolean) => void): void {
    if (this.done) {
      // The save gave up waiting for it: hand it back unused.
      if (!err && c) rel();
      return;
    }
    if (err || !c) {
      // Failing to get a connection without a SQLSTATE (a timeout, a reset, a refused socket) is a
      // connection error whatever the driver's wording; the server's refusals keep their code.
      const coded = err && typeof (err as { code?: unknown }).code === 'string';
      this.finish(coded ? err : new ConnectFailure(err?.message ?? 'the pool returned no connection', err), null);
      return;
    }
    const engine = this.job.engine;
    this.client = c;
    this.release = rel;
    this.due = this.job.deadline;
    engine.guard(c);
    this.inFlight = true;
    const q = this.job.q;
    if (engine.pipelined) {
      const config = this.named ? { name: q.name, text: q.text, values: q.values } : { text: q.text, values: q.values };
      c.query<{ id: string | null }>(config).then(
        (res) => this.answered(null, res.rows[0]?.id ?? null),
        (e: Error) => this.answered(e, null),
      );
      return;
    }
    c.query(new UpsertCall(this.named ? q.name : '', q.text, q.values, (e, id) => this.answered(e, id)) as never);
  }

  private answered(e: Error | null, id: string | null): void {
    if (!this.inFlight) return; // destroyed after an unanswered cancel
    this.inFlight = false;
    // A broken connection is dropped by the pool (it checks the client); SQL errors keep it.
    this.release!();
    if (this.abandoned) return;
    if (e && this.named && isPreparedConflict(e)) {
      // A transaction-mode pooler: the statement did not run. Again, unnamed; the store stays unnamed.
      this.job.engine.prepared = false;
      this.done = true;
      this.job.engine.watch.delete(this);
      this.job.run(false);
      return;
    }
    this.finish(e, id);
  }

  expire(now: number): void {
    if (this.done) return;
    const job = this.job;
    if (this.client === undefined) {
      const why = this.connectMs < job.engine.connectTimeoutMs ? "the save's deadline" : 'connectTimeoutMs';
      this.finish(new Deadline('connect', `no connection within ${Math.round(this.connectMs)} ms (${why})`), null);
      return;
    }
    if (now + 0.5 < job.deadline) {
      this.due = job.deadline;
      return;
    }
    // The statement outlived the save's deadline: cancel it on the server; destroy the
    // connection if the server does not answer the cancel either.
    this.abandoned = true;
    this.finish(new Deadline('statement', `no answer within the save's deadline (${Math.round(job.budget)} ms); the statement was cancelled`), null);
    sendCancel(this.client, CANCEL_GRACE_MS);
    setTimeout(() => {
      if (!this.inFlight) return;
      this.inFlight = false;
      this.release!(new Error('tsm: the connection did not answer a cancel; destroyed'));
    }, CANCEL_GRACE_MS).unref();
  }

  private finish(err: unknown, id: string | null): void {
    if (this.done) return;
    this.done = true;
    this.job.engine.watch.delete(this);
    this.job.attemptDone(err, id);
  }
}

/** What a store's saves share: the pool, the deadlines in flight, the settings (internal). */
class Engine {
  prepared: boolean;
  closed = false;
  readonly watch = new Watch();
  /** pg refuses custom submittables on pipelined clients: use its own Query there. */
  readonly pipelined: boolean;
  /** Clients given an 'error' listener (a connection that breaks mid-statement must not crash the process). */
  private readonly guarded = new WeakSet<PoolClient>();

  constructor(
    readonly pool: Pool,
    readonly via: Via,
    readonly retry: RetryPolicy,
    readonly connectTimeoutMs: number,
    readonly logger: ((event: SaveLogEvent) => void) | undefined,
    prepared: boolean,
  ) {
    this.prepared = prepared;
    this.pipelined = (pool as unknown as { options?: { pipeline?: boolean } }).options?.pipeline === true;
  }

  /** An 'error' listener on each client once. */
  guard(c: PoolClient): void {
    if (this.guarded.has(c)) return;
    c.on('error', noop);
    this.guarded.add(c);
  }

  /** Calls the logger hook with user id, length and outcome only. */
  log(input: SaveInput, r: SaveResult): SaveResult {
    try {
      this.logger?.({
        userId: userIdText(input?.userId),
        length: typeof input?.sessionStringEnc === 'string' ? input.sessionStringEnc.length : null,
        outcome: r.ok ? 'saved' : r.code,
      });
    } catch {
      // a logger must not turn a save into an exception
    }
    return r;
  }

  /** The result when the upsert returned no id. */
  noId(row: UpsertRow, attempt: number): SaveFailure {
    if (this.via === 'statement') {
      // ON CONFLICT … DO UPDATE … WHERE t.tenant_id = EXCLUDED.tenant_id matched nothing.
      return {
        ok: false,
        code: 'tenant_mismatch',
        retryable: false,
        sqlstate: 'TSM01',
        details: `user_id ${row.userId} belongs to another tenant (the row was left as it was)`,
        attempts: attempt,
      };
    }
    return { ok: false, code: 'database_error', retryable: false, sqlstate: null, details: 'upsert_telegram_session returned no id', attempts: attempt };
  }

  failure(err: unknown, attempt: number): SaveFailure {
    if (err instanceof ConnectFailure) {
      return { ok: false, code: 'connection_error', retryable: true, sqlstate: null, details: firstLine(err.message), attempts: attempt };
    }
    if (err instanceof Deadline) {
      return {
        ok: false,
        code: err.phase === 'connect' ? 'connection_error' : 'statement_timeout',
        retryable: true,
        sqlstate: null,
        details: err.message,
        attempts: attempt,
      };
    }
    const c = classifyError(err);
    return { ok: false, code: c.code, retryable: c.retryable, sqlstate: c.sqlstate, details: firstLine(c.message), attempts: attempt };
  }
}

export class SessionStore {
  readonly schema: string;
  readonly via: Via;
  readonly retry: RetryPolicy;
  readonly connectTimeoutMs: number;
  readonly saveTimeoutMs: number;
  private readonly engine: Engine;
  private readonly pool: Pool;
  private readonly ownsPool: boolean;
  private readonly metricsReady: Promise<SessionMetrics | null>;
  /** Set once metricsReady has settled (saves the await on every later call). */
  private metrics: SessionMetrics | null | undefined;
  /** The statement texts and names, worked out once. */
  private readonly statements: UpsertStatements;

  constructor(options: SessionStoreOptions) {
    const o = options ?? {};
    if (o.pool && o.connectionString !== undefined) throw new TypeError('SessionStore: pass either pool or connectionString, not both');
    if (o.via !== undefined && !VIAS.includes(o.via)) throw new TypeError(`SessionStore: via must be one of ${VIAS.join(', ')}`);
    if (o.schema !== undefined && !nonEmpty(o.schema)) throw new TypeError('SessionStore: schema must be a non-empty string');
    this.schema = o.schema ?? 'public';
    this.via = o.via ?? 'function';
    this.statements = upsertStatements(this.schema, this.via);
    this.retry = retryPolicy(o.retry);
    const connectMs = positiveMs('connectTimeoutMs', o.connectTimeoutMs);
    this.saveTimeoutMs = positiveMs('saveTimeoutMs', o.saveTimeoutMs) ?? DEFAULT_SAVE_TIMEOUT_MS;
    if (o.pool) {
      this.pool = o.pool;
      this.ownsPool = false;
      const theirs = (o.pool as unknown as { options?: { connectionTimeoutMillis?: number } }).options?.connectionTimeoutMillis;
      this.connectTimeoutMs = connectMs ?? (theirs && theirs > 0 ? theirs : DEFAULT_CONNECT_TIMEOUT_MS);
    } else {
      // libpq semantics (the CLI's own resolution): throws a one-line error for a malformed URL.
      const resolveOpts: PgConfigOptions = { ...(o.env ? { env: o.env } : {}), from: 'connectionString' };
      const target = resolvePg(o.connectionString, resolveOpts);
      const fromPool = o.poolConfig?.connectionTimeoutMillis;
      this.connectTimeoutMs = connectMs ?? (fromPool && fromPool > 0 ? fromPool : target.connectTimeout * 1000);
      this.pool = new pg.Pool(savePoolConfig(target.config, this.connectTimeoutMs, o.poolConfig));
      // An idle client whose server goes away emits 'error' on the pool; unhandled, it would crash the process.
      this.pool.on('error', noop);
      this.ownsPool = true;
    }
    this.engine = new Engine(this.pool, this.via, this.retry, this.connectTimeoutMs, o.logger, o.preparedStatements !== false);
    this.metricsReady = o.metrics === false ? Promise.resolve(null) : createSessionMetrics(o.registry);
    // Surfaced by registry()/save(); never an unhandled rejection.
    this.metricsReady.then(
      (m) => (this.metrics = m),
      () => (this.metrics = null),
    );
  }

  /** Whether saves still use named prepared statements (false after a pooler conflict, or when turned off). */
  get preparedStatements(): boolean {
    return this.engine.prepared;
  }

  /** The registry holding this store's metrics (undefined with `metrics: false`). */
  async registry(): Promise<Registry | undefined> {
    return (await this.metricsReady)?.registry;
  }

  /** The metrics in the Prometheus text exposition format ('' with `metrics: false`). */
  async metricsText(): Promise<string> {
    const reg = await this.registry();
    return reg ? reg.metrics() : '';
  }

  /** Saves (upserts) one session. Never throws for database errors or bad input. */
  save(input: SaveInput, options: SaveOptions = NO_OPTIONS): Promise<SaveResult> {
    const metrics = this.metrics;
    // The first saves of a new store wait for prom-client to load (once).
    if (metrics === undefined) return this.metricsReady.catch(noop).then(() => this.save(input, options));
    const engine = this.engine;
    const finish = (r: SaveResult): Promise<SaveResult> => Promise.resolve(engine.logger ? engine.log(input, r) : r);
    const invalid = validateSaveInput(input);
    if (invalid !== null) {
      metrics?.observe('failed', 0, 'missing_required_field');
      return finish({ ok: false, code: 'missing_required_field', retryable: false, sqlstate: null, details: invalid, attempts: 0 });
    }
    if (engine.closed) {
      return finish({ ok: false, code: 'database_error', retryable: false, sqlstate: null, details: 'the SessionStore is closed', attempts: 0 });
    }
    const budget = options.timeoutMs ?? this.saveTimeoutMs;
    if (!(budget > 0)) return Promise.reject(new RangeError(`SessionStore.save: timeoutMs must be a positive number of ms, got ${options.timeoutMs}`));
    const row: UpsertRow = {
      tenantId: input.tenantId,
      userId: userIdText(input.userId)!,
      sessionStringEnc: input.sessionStringEnc,
      keyId: input.keyId ?? null,
      status: input.status ?? 'pending',
      authError: input.authError,
      errorDetails: input.errorDetails,
    };
    const q = upsertQuery(this.statements, this.via, row);
    return new Promise<SaveResult>((resolve) => new SaveJob(engine, input, row, q, performance.now() + budget, budget, options.signal, metrics, resolve).next());
  }

  /** Ends the pool when SessionStore built it (a pool you passed stays open). Idempotent. */
  async close(): Promise<void> {
    if (this.engine.closed) return;
    this.engine.closed = true;
    if (this.ownsPool) await this.pool.end().catch(() => {});
  }
}
