/**
 * Error classification by SQLSTATE (never by message text: messages are translated with
 * lc_messages) and by Node socket error codes. The table is the design's contract.
 */
export type ErrorCode =
  | 'session_too_long'
  | 'missing_column'
  | 'missing_unique_index'
  | 'missing_upsert_function'
  | 'duplicate_session'
  | 'invalid_tenant_or_user'
  | 'missing_required_field'
  | 'tenant_mismatch'
  | 'permission_denied'
  | 'read_only'
  | 'lock_timeout'
  | 'statement_timeout'
  | 'serialization_failure'
  | 'too_many_connections'
  | 'connection_error'
  | 'prepared_statement_conflict'
  | 'database_error';

export interface Classified {
  code: ErrorCode;
  retryable: boolean;
  /** The SQLSTATE, or the Node error code for socket errors; null when neither exists. */
  sqlstate: string | null;
  /** The server's (or driver's) message; never contains a session string. */
  message: string;
}

const BY_SQLSTATE: Record<string, [ErrorCode, boolean]> = {
  '22001': ['session_too_long', false],
  '42703': ['missing_column', false],
  '42P10': ['missing_unique_index', false],
  '42883': ['missing_upsert_function', false],
  '23505': ['duplicate_session', false],
  '23503': ['invalid_tenant_or_user', false],
  '23502': ['missing_required_field', false],
  TSM01: ['tenant_mismatch', false],
  '42501': ['permission_denied', false],
  '25006': ['read_only', true],
  '55P03': ['lock_timeout', true],
  '57014': ['statement_timeout', true],
  '40001': ['serialization_failure', true],
  '40P01': ['serialization_failure', true],
  '53300': ['too_many_connections', true],
  '57P01': ['connection_error', true],
  '57P02': ['connection_error', true],
  '57P03': ['connection_error', true],
  // A transaction-mode pooler (PgBouncer < 1.21, RDS Proxy, Supavisor) mixing server connections
  // under named prepared statements: "already exists" / "does not exist". The statement never ran;
  // SessionStore retries it unnamed by itself, so nothing here is worth a blind retry.
  '42P05': ['prepared_statement_conflict', false],
  '26000': ['prepared_statement_conflict', false],
};

const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
]);

/**
 * node-postgres raises a few client-side errors with no code at all (a dropped socket, a
 * connect timeout). These strings are the driver's own, in English, not server messages.
 */
const DRIVER_CONNECTION_MESSAGES = [
  'Connection terminated',
  'connection timeout',
  'timeout expired',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error',
  'Client was closed and is not queryable',
];

function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

export function classifyError(err: unknown): Classified {
  const message = err instanceof Error ? err.message : String(err);
  const code = errorCode(err);
  // AggregateError (e.g. both ::1 and 127.0.0.1 refused) carries the socket code on its members.
  const inner =
    code ?? (err instanceof AggregateError ? err.errors.map(errorCode).find((c) => c !== undefined) : undefined);
  if (inner !== undefined) {
    const hit = BY_SQLSTATE[inner];
    if (hit) return { code: hit[0], retryable: hit[1], sqlstate: inner, message };
    if (/^08[0-9A-Z]{3}$/.test(inner)) return { code: 'connection_error', retryable: true, sqlstate: inner, message };
    if (SOCKET_CODES.has(inner)) return { code: 'connection_error', retryable: true, sqlstate: inner, message };
    if (/^[0-9A-Z]{5}$/.test(inner)) return { code: 'database_error', retryable: false, sqlstate: inner, message };
  }
  if (DRIVER_CONNECTION_MESSAGES.some((m) => message.includes(m))) {
    return { code: 'connection_error', retryable: true, sqlstate: inner ?? null, message };
  }
  return { code: 'database_error', retryable: false, sqlstate: inner ?? null, message };
}
