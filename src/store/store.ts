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
 */
import pg from 'pg';
import type { Pool, PoolConfig } from 'pg';
import type { Registry } from 'prom-client';
import { classifyError, type ErrorCode } from '../db/classify.js';
import { createSessionMetrics, type SessionMetrics } from './metrics.js';
import { backoffDelay, retryPolicy, sleep, type RetryOptions, type RetryPolicy } from '../db/retry.js';
import { upsertQuery, VIAS, type UpsertQuery, type UpsertRow, type Via } from './sql.js';
import { UpsertCall } from './upsert-call.js';

export type { Via } from './sql.js';
export type { RetryOptions } from '../db/retry.js';

export interface SaveInput {
  tenantId: string;
  /** Telegram user id as text; required (a pending row without a user is not a session). */
  userId: string;
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
  /** The SQLSTATE (or Node socket code); null when input validation rejected the save. */
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
  /** Or a connection string: SessionStore builds its own pool (application_name 'tsm') and ends it in close(). */
  connectionString?: string;
  /** Extra settings for the pool SessionStore builds (max, statement_timeout, ssl, …). */
  poolConfig?: PoolConfig;
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
  /** Named prepared statements (default true); turn off behind PgBouncer in transaction mode before 1.21. */
  preparedStatements?: boolean;
}

export interface SaveOptions {
  /** Stops retrying (the attempt in flight still completes). */
  signal?: AbortSignal;
}

const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';
const optionalText = (v: unknown): boolean => v === undefined || v === null || typeof v === 'string';

/** Input problems, checked before the database is touched; null when the input is fine. */
export function validateSaveInput(input: unknown): string | null {
  if (input === null || typeof input !== 'object') return 'save() expects an object';
  const i = input as Record<string, unknown>;
  if (!nonEmpty(i.tenantId)) return 'tenantId must be a non-empty string';
  if (!nonEmpty(i.userId)) return 'userId must be a non-empty string';
  if (typeof i.sessionStringEnc !== 'string' || i.sessionStringEnc === '') return 'sessionStringEnc must be a non-empty string';
  if (!optionalText(i.keyId)) return 'keyId must be a string or null';
  if (i.status !== undefined && !nonEmpty(i.status)) return 'status must be a non-empty string when given';
  if (!optionalText(i.authError)) return 'authError must be a string or null when given';
  if (!optionalText(i.errorDetails)) return 'errorDetails must be a string or null when given';
  return null;
}

const firstLine = (s: string): string => s.split('\n')[0] ?? '';

export class SessionStore {
  readonly schema: string;
  readonly via: Via;
  readonly retry: RetryPolicy;
  private readonly pool: Pool;
  private readonly ownsPool: boolean;
  private readonly metricsReady: Promise<SessionMetrics | null>;
  /** Set once metricsReady has settled (saves the await on every later call). */
  private metrics: SessionMetrics | null | undefined;
  private readonly submit: (c: UpsertCall, cb: (err: Error | undefined, id?: string | null) => void) => void;
  private readonly logger: ((event: SaveLogEvent) => void) | undefined;
  private readonly prepared: boolean;
  private closed = false;
  /** pg refuses custom submittables on pipelined clients: use its own Query there. */
  private readonly pipelined: boolean;

  constructor(options: SessionStoreOptions) {
    const o = options ?? {};
    if (o.pool && o.connectionString) throw new TypeError('SessionStore: pass either pool or connectionString, not both');
    if (o.via !== undefined && !VIAS.includes(o.via)) throw new TypeError(`SessionStore: via must be one of ${VIAS.join(', ')}`);
    if (o.schema !== undefined && !nonEmpty(o.schema)) throw new TypeError('SessionStore: schema must be a non-empty string');
    this.schema = o.schema ?? 'public';
    this.via = o.via ?? 'function';
    this.retry = retryPolicy(o.retry);
    this.logger = o.logger;
    this.prepared = o.preparedStatements !== false;
    if (o.pool) {
      this.pool = o.pool;
      this.ownsPool = false;
    } else {
      this.pool = new pg.Pool({ application_name: 'tsm', ...o.poolConfig, ...(o.connectionString ? { connectionString: o.connectionString } : {}) });
      // An idle client whose server goes away emits 'error' on the pool; unhandled, it would crash the process.
      this.pool.on('error', () => {});
      this.ownsPool = true;
    }
    this.pipelined = (this.pool as unknown as { options?: { pipeline?: boolean } }).options?.pipeline === true;
    this.metricsReady = o.metrics === false ? Promise.resolve(null) : createSessionMetrics(o.registry);
    // Surfaced by registry()/save(); never an unhandled rejection.
    this.metricsReady.then(
      (m) => (this.metrics = m),
      () => (this.metrics = null),
    );
    this.submit = this.pool.query.bind(this.pool) as unknown as typeof this.submit;
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
  async save(input: SaveInput, options: SaveOptions = {}): Promise<SaveResult> {
    const metrics = this.metrics !== undefined ? this.metrics : await this.metricsReady.catch(() => null);
    const finish = (r: SaveResult): SaveResult => (this.logger ? this.log(input, r) : r);

    const invalid = validateSaveInput(input);
    if (invalid !== null) {
      metrics?.observe('failed', 0, 'missing_required_field');
      return finish({ ok: false, code: 'missing_required_field', retryable: false, sqlstate: null, details: invalid, attempts: 0 });
    }
    if (this.closed) {
      return finish({ ok: false, code: 'database_error', retryable: false, sqlstate: null, details: 'the SessionStore is closed', attempts: 0 });
    }

    const row: UpsertRow = {
      tenantId: input.tenantId,
      userId: input.userId,
      sessionStringEnc: input.sessionStringEnc,
      keyId: input.keyId ?? null,
      status: input.status ?? 'pending',
      ...(input.authError !== undefined ? { authError: input.authError } : {}),
      ...(input.errorDetails !== undefined ? { errorDetails: input.errorDetails } : {}),
    };
    const q = upsertQuery(this.schema, this.via, row, this.prepared);

    for (let attempt = 1; ; attempt++) {
      const t0 = performance.now();
      const r = await this.attempt(q, row, attempt);
      metrics?.observe(r.ok ? 'success' : 'failed', (performance.now() - t0) / 1000, r.ok ? undefined : r.code);
      if (r.ok || !r.retryable || attempt >= this.retry.attempts || options.signal?.aborted || this.closed) return finish(r);
      await sleep(backoffDelay(attempt, this.retry), options.signal);
      if (options.signal?.aborted) return finish(r);
    }
  }

  /** Calls the logger hook with user id, length and outcome only. */
  private log(input: SaveInput, r: SaveResult): SaveResult {
    try {
      this.logger?.({
        userId: typeof input?.userId === 'string' ? input.userId : null,
        length: typeof input?.sessionStringEnc === 'string' ? input.sessionStringEnc.length : null,
        outcome: r.ok ? 'saved' : r.code,
      });
    } catch {
      // a logger must not turn a save into an exception
    }
    return r;
  }

  /** One database attempt; never rejects. */
  private attempt(q: UpsertQuery, row: UpsertRow, attempt: number): Promise<SaveResult> {
    return this.execute(q).then(
      (id): SaveResult => {
        if (id !== null) return { ok: true, id, attempts: attempt };
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
      },
      (err: unknown): SaveResult => {
        const c = classifyError(err);
        return { ok: false, code: c.code, retryable: c.retryable, sqlstate: c.sqlstate, details: firstLine(c.message), attempts: attempt };
      },
    );
  }

  /** Runs the upsert; resolves the returned id (null: no row came back). */
  private execute(q: UpsertQuery): Promise<string | null> {
    if (q.name !== undefined && !this.pipelined) {
      const call = new UpsertCall(q.name, q.text, q.values);
      return new Promise((resolve, reject) => this.submit(call, (err, id) => (err ? reject(err) : resolve(id ?? null))));
    }
    const config = q.name ? { name: q.name, text: q.text, values: q.values } : { text: q.text, values: q.values };
    return this.pool.query<{ id: string | null }>(config).then((res) => res.rows[0]?.id ?? null);
  }

  /** Ends the pool when SessionStore built it (a pool you passed stays open). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsPool) await this.pool.end().catch(() => {});
  }
}
