/**
 * The three server timeouts a migration can run into, what tsm sets for its own work, and how a
 * timeout that fired is named in a message ("lock_timeout (--lock-timeout 500ms)",
 * "statement_timeout (role setting 200ms)").
 *
 * Production roles often carry `statement_timeout`, `idle_in_transaction_session_timeout` and
 * `lock_timeout`. tsm's own work overrides them where it needs to: every transaction tsm opens
 * starts with SET LOCAL of all three, and the statements a migration runs outside a transaction
 * (its catalog reads while it is built, CREATE INDEX CONCURRENTLY) run with the same values set on
 * the session for exactly that long, then RESET. What the session had before tsm changed anything
 * (value and source, from pg_settings) is read once at the start and kept in tsm's process, so a
 * message can say where a value came from even after the connection is gone.
 */
import type { Client } from 'pg';
import { classifyError } from '../db/classify.js';
import type { Statement } from './history.js';

export const TIMEOUTS = ['lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout'] as const;
export type TimeoutName = (typeof TIMEOUTS)[number];

export interface ServerTimeout {
  /** As SHOW displays it: '200ms', '5s', '0'. */
  value: string;
  /** pg_settings.source: 'default', 'user' (ALTER ROLE), 'database', 'configuration file', 'client', … */
  source: string;
}

export type ServerTimeouts = Record<TimeoutName, ServerTimeout>;

/** What the session has before tsm sets anything (one read-only round trip). */
export async function readServerTimeouts(client: Client): Promise<ServerTimeouts> {
  const r = await client.query<{ name: TimeoutName; value: string; source: string }>(
    `SELECT name, pg_catalog.current_setting(name) AS value, source FROM pg_catalog.pg_settings WHERE name = ANY($1::text[])`,
    [[...TIMEOUTS]],
  );
  const out = {} as ServerTimeouts;
  for (const t of TIMEOUTS) out[t] = { value: '0', source: 'default' };
  for (const row of r.rows) out[row.name] = { value: row.value, source: row.source };
  return out;
}

/** Where a setting came from, in words. */
export function sourceWords(source: string): string {
  switch (source) {
    case 'user':
      return 'role setting';
    case 'database':
      return 'database setting';
    case 'database user':
      return 'role setting in this database';
    case 'configuration file':
      return 'server setting';
    case 'client':
      return 'connection option';
    case 'session':
      return 'session setting';
    case 'default':
      return 'server default';
    default:
      return `${source} setting`;
  }
}

/** tsm's values for its own work: lock_timeout from --lock-timeout, the other two off. */
export function tsmValues(lockTimeoutMs: number): Record<TimeoutName, string> {
  return { lock_timeout: `${Math.trunc(lockTimeoutMs)}ms`, statement_timeout: '0', idle_in_transaction_session_timeout: '0' };
}

/** SET LOCAL of tsm's values: the start of every transaction tsm opens. */
export function setLocal(lockTimeoutMs: number): Statement[] {
  const v = tsmValues(lockTimeoutMs);
  return TIMEOUTS.map((t) => ({ text: `SET LOCAL ${t} = ${v[t] === '0' ? '0' : `'${v[t]}'`}`, values: [] }));
}

/** The same values on the session, for a migration's statements outside a transaction. */
export function setSession(lockTimeoutMs: number): Statement[] {
  const v = tsmValues(lockTimeoutMs);
  return TIMEOUTS.map((t) => ({ text: `SET ${t} = ${v[t] === '0' ? '0' : `'${v[t]}'`}`, values: [] }));
}

/** Back to the session's own values (the role's, the database's, the server's). */
export const RESET_SESSION: Statement[] = TIMEOUTS.map((t) => ({ text: `RESET ${t}`, values: [] }));

export interface TimeoutContext {
  /** --lock-timeout, in ms. */
  lockTimeoutMs: number;
  /** The session's own settings (null when they could not be read). */
  server: ServerTimeouts | null;
  /** Whether the statement ran under tsm's values (inside a migration or a tsm transaction). */
  underTsm: boolean;
  /** Whether tsm itself cancelled the statement (Ctrl-C). */
  cancelledByTsm: boolean;
}

function fmt(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
}

function serverSays(name: TimeoutName, ctx: TimeoutContext): string {
  const s = ctx.server?.[name];
  return s ? `${sourceWords(s.source)} ${s.value}` : 'setting unknown';
}

/**
 * The timeout an error is, named with where its value came from; null for any other error.
 * By SQLSTATE only (messages are translated): 55P03 lock_not_available, 57014 query_canceled,
 * 25P03 idle_in_transaction_session_timeout, 57P05 idle_session_timeout.
 */
export function timeoutName(err: unknown, ctx: TimeoutContext): string | null {
  switch (classifyError(err).sqlstate) {
    case '55P03': {
      const own = err as { tsmConcurrent?: boolean; tsmLockTimeoutMs?: number };
      if (own.tsmConcurrent === true && own.tsmLockTimeoutMs !== undefined) return `lock_timeout (--index-lock-timeout ${fmt(own.tsmLockTimeoutMs)})`;
      return ctx.underTsm ? `lock_timeout (--lock-timeout ${fmt(ctx.lockTimeoutMs)})` : `lock_timeout (${serverSays('lock_timeout', ctx)})`;
    }
    case '57014':
      if (ctx.cancelledByTsm) return 'cancelled by tsm (Ctrl-C)';
      return ctx.underTsm
        ? 'statement_timeout set inside the migration, or a cancel from another session (tsm runs migrations with statement_timeout = 0)'
        : `statement_timeout (${serverSays('statement_timeout', ctx)})`;
    case '25P03':
      return ctx.underTsm
        ? 'idle_in_transaction_session_timeout set inside the migration (tsm runs migrations with it off)'
        : `idle_in_transaction_session_timeout (${serverSays('idle_in_transaction_session_timeout', ctx)})`;
    case '57P05':
      return 'idle_session_timeout (the server closed the idle connection)';
    default:
      return null;
  }
}
