/**
 * How dedupe talks to the server: every statement inside a transaction that opens with its own
 * `SET LOCAL` settings, sent in the same message as BEGIN (so the server is never idle inside the
 * transaction before they apply). Nothing is set for the session: through a transaction-mode
 * pooler nothing outlives the transaction, and the caller's connection comes back as it was.
 *
 * The settings override role- or database-level values where dedupe's work needs it: a scan
 * runs without statement_timeout (it reads the whole table once per pass), a batch with a short
 * one; idle_in_transaction_session_timeout is raised to a bound that a working tsm never reaches
 * (a frozen one, e.g. stopped with Ctrl-Z, still loses its transaction and its row locks).
 *
 * A server that ends the session while the client is idle (idle_in_transaction_session_timeout,
 * idle_session_timeout, a terminated backend) reports why in an asynchronous error; the next
 * query then only fails with "Client has encountered a connection error". The session keeps the
 * first such error and throws it instead, so the message names the timeout that fired.
 */
import type { Client, QueryResult, QueryResultRow } from 'pg';
import { classifyError } from '../db/classify.js';

export interface TxSettings {
  /** REPEATABLE READ READ ONLY (a consistent snapshot for counts and the plan) or READ COMMITTED. */
  readOnly: boolean;
  /** 0 = no limit. */
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionMs: number;
  /**
   * false: COMMIT returns without waiting for the WAL flush. For dedupe's batches: a server crash
   * can undo the last few (under a second of work), which leaves every row where it was before
   * those batches, and the next run moves them again. A synchronous commit at the end of a pass
   * makes them all durable before anything is reported.
   */
  synchronousCommit?: boolean;
  /**
   * work_mem for the transaction (MB). The planning scan hashes every user_id of the table and
   * sorts the duplicated ones' rows; with the default 4 MB both spill to disk and the scan takes
   * about three times as long (measured on 1,000,000 rows). It is per sort or hash, in this one
   * backend, for the duration of the scan.
   */
  workMemMb?: number;
}

/** Scans and checks: one snapshot, no statement limit, no row locks. */
export const READ_TX: TxSettings = { readOnly: true, statementTimeoutMs: 0, lockTimeoutMs: 5000, idleInTransactionMs: 60_000, workMemMb: 64 };

export function settingsSql(s: TxSettings): string[] {
  const ms = (n: number): number => Math.max(0, Math.round(n));
  return [
    `BEGIN ISOLATION LEVEL ${s.readOnly ? 'REPEATABLE READ READ ONLY' : 'READ COMMITTED'}`,
    `SET LOCAL statement_timeout = ${ms(s.statementTimeoutMs)}`,
    `SET LOCAL lock_timeout = ${ms(s.lockTimeoutMs)}`,
    `SET LOCAL idle_in_transaction_session_timeout = ${ms(s.idleInTransactionMs)}`,
    ...(s.synchronousCommit === false ? ['SET LOCAL synchronous_commit = off'] : []),
    ...(s.workMemMb !== undefined ? [`SET LOCAL work_mem = '${Math.max(1, Math.round(s.workMemMb))}MB'`] : []),
  ];
}

export class Session {
  private asyncError: unknown;
  private readonly onError = (err: unknown): void => {
    this.asyncError ??= err;
  };

  constructor(readonly client: Client) {
    client.on('error', this.onError);
  }

  dispose(): void {
    this.client.removeListener('error', this.onError);
  }

  /** The error that explains `err`: the server's own reason when the connection was lost because of it. */
  explain(err: unknown): unknown {
    if (this.asyncError !== undefined && classifyError(err).code === 'connection_error' && err !== this.asyncError) return this.asyncError;
    return err;
  }

  async query<R extends QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    try {
      return await this.client.query<R>(text, values);
    } catch (err) {
      throw this.explain(err);
    }
  }

  /**
   * Opens a transaction with `settings` and `extra` statements (no parameters) in one message;
   * returns the results of `extra`. The caller must end it (commit / rollback).
   */
  async begin(settings: TxSettings, extra: string[] = []): Promise<QueryResult[]> {
    const head = settingsSql(settings);
    try {
      const r = (await this.client.query([...head, ...extra].join(';\n'))) as unknown as QueryResult | QueryResult[];
      const all = Array.isArray(r) ? r : [r];
      return all.slice(head.length);
    } catch (err) {
      await this.rollback();
      throw this.explain(err);
    }
  }

  async commit(): Promise<void> {
    await this.query('COMMIT');
  }

  async rollback(): Promise<void> {
    await this.client.query('ROLLBACK').catch(() => {});
  }

  /** `fn` inside one transaction; committed when it resolves, rolled back when it throws. */
  async transaction<T>(settings: TxSettings, fn: (extra: QueryResult[]) => Promise<T>, extra: string[] = []): Promise<T> {
    const results = await this.begin(settings, extra);
    let value: T;
    try {
      value = await fn(results);
    } catch (err) {
      await this.rollback();
      throw this.explain(err);
    }
    await this.commit();
    return value;
  }
}

/** The SQLSTATE (or Node socket code) of an error, or null. */
export function sqlstateOf(err: unknown): string | null {
  return classifyError(err).sqlstate;
}

/**
 * Server-side timeouts by SQLSTATE, named by their setting (messages are translated with
 * lc_messages, so never by text). 57014 is also a cancel request; dedupe only cancels on Ctrl-C.
 */
const TIMEOUTS: Record<string, string> = {
  '55P03': 'lock_timeout',
  '57014': 'statement_timeout',
  '25P03': 'idle_in_transaction_session_timeout',
  '57P05': 'idle_session_timeout',
};

export interface StopReason {
  /** A stable word: the timeout setting that fired, or the classified error code. */
  code: string;
  sqlstate: string | null;
  /** One line: what happened, naming the timeout when one fired. */
  message: string;
}

/** Why a database error stopped dedupe, naming the timeout that fired (if one did). */
export function stopReason(err: unknown): StopReason {
  const c = classifyError(err);
  const first = c.message.split('\n')[0] ?? '';
  const timeout = c.sqlstate ? TIMEOUTS[c.sqlstate] : undefined;
  if (timeout === undefined) return { code: c.code, sqlstate: c.sqlstate, message: first };
  const why: Record<string, string> = {
    lock_timeout: 'waited longer than lock_timeout for a lock another session holds',
    statement_timeout: 'a statement ran longer than statement_timeout (or was cancelled)',
    idle_in_transaction_session_timeout: 'the server ended the session: idle_in_transaction_session_timeout fired while tsm was between two statements of a transaction',
    idle_session_timeout: 'the server ended the session: idle_session_timeout fired while tsm was between two transactions',
  };
  return { code: timeout, sqlstate: c.sqlstate, message: `${why[timeout]} (server: ${first})` };
}
