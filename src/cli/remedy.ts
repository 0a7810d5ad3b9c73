/**
 * What to do about each failure test-write (or a save) can report: a command or copy-paste SQL.
 * Suggested commands carry `--schema` (shell-quoted) when the schema is not `public`.
 */
import { qualify } from '../db/ident.js';
import { tsmCommand } from '../report/shell.js';
import { describeSetting, type ServerTimeouts, type TimeoutSetting } from './test-rows.js';

/** A setting as SHOW prints it ('0', '1ms', '200ms', '5s', '1min', '2h', '1d') in ms; NaN when unreadable. */
export function settingMs(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?$/.exec(value.trim());
  if (!m) return NaN;
  const unit: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };
  return Number(m[1]) * unit[m[2] ?? 'ms']!;
}

/** How to undo a setting where it was set (the role's, the database's, the server's). */
function resetHint(name: string, s: TimeoutSetting): string {
  switch (s.source) {
    case 'user':
      return `ALTER ROLE CURRENT_USER RESET ${name}; (or ALTER ROLE CURRENT_USER SET ${name} = '5s';)`;
    case 'database user':
      return `ALTER ROLE CURRENT_USER IN DATABASE <db> RESET ${name};`;
    case 'database':
      return `ALTER DATABASE <db> RESET ${name};`;
    case 'configuration file':
      return `raise ${name} in postgresql.conf (or set it per role: ALTER ROLE … SET ${name} = '5s')`;
    default:
      return `raise ${name} where it is set (${s.source})`;
  }
}

/**
 * " (lock_timeout = 1ms, set for the role (ALTER ROLE … SET))" — the timeout that fired and where
 * it came from, for the line that reports the failure; '' for other codes.
 */
export function timeoutNote(code: string, sqlstate: string | null, timeouts?: ServerTimeouts): string {
  if (code === 'statement_timeout' && sqlstate === null) return " (SessionStore's own deadline, saveTimeoutMs: the server did not answer in time)";
  if (!timeouts) return '';
  if (code === 'lock_timeout' && timeouts.lock_timeout.value !== '0') return ` (${describeSetting('lock_timeout', timeouts.lock_timeout)})`;
  if (code === 'statement_timeout' && timeouts.statement_timeout.value !== '0') return ` (${describeSetting('statement_timeout', timeouts.statement_timeout)})`;
  return '';
}

export function remedyFor(code: string, schema: string, sqlstate?: string | null, timeouts?: ServerTimeouts): string {
  const table = qualify(schema, 'telegram_sessions');
  const fn = qualify(schema, 'upsert_telegram_session');
  const up = tsmCommand(schema, 'migrate up');
  const doctor = tsmCommand(schema, 'doctor');
  const dedupe = tsmCommand(schema, 'dedupe');
  switch (code) {
    case 'missing_unique_index':
      return `${up} (builds the unique index on user_id CONCURRENTLY; ${doctor} shows what is missing)`;
    case 'missing_upsert_function':
      return `${up} (installs ${fn}); or test the statement path with --via statement`;
    case 'missing_column':
      return `${up} (adds auth_error / error_details); ${doctor} lists the missing columns`;
    case 'session_too_long':
      return `${up} (widens varchar session columns to text, no table rewrite)`;
    case 'duplicate_session':
      return `${up} (replaces an UPDATE-then-INSERT ${fn} with one INSERT … ON CONFLICT, race-free)`;
    case 'duplicate_rows':
      return `user_id is not unique: ${doctor}, then ${dedupe} and ${up}`;
    case 'id_changed':
      return `the update returned another row's id: ${up} installs a ${fn} that returns the existing id`;
    case 'readback_mismatch':
    case 'row_missing':
    case 'updated_at_not_moved':
      return `something rewrites or hides rows of ${table} (a trigger, a rule, row-level security?): check them, then ${doctor}`;
    case 'tenant_mismatch':
      return 'the user id is saved under another tenant; tsm never moves a row between tenants';
    case 'invalid_tenant_or_user':
      return `a foreign key on ${table} rejects the test tenant 'tsm-test': run test-write where that tenant may exist`;
    case 'missing_required_field':
      return `${table} has a NOT NULL column the upsert does not fill: give it a DEFAULT, or compare with ${doctor}`;
    case 'permission_denied':
      return `GRANT SELECT, INSERT, UPDATE, DELETE ON ${table} TO current_user; GRANT EXECUTE ON FUNCTION ${fn} TO current_user;`;
    case 'read_only':
      return 'this server (or role) is read-only: connect to the primary (after a failover, check the URL)';
    case 'lock_timeout':
    case 'statement_timeout': {
      const blockers = `SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE wait_event_type = 'Lock' OR state = 'idle in transaction';`;
      if (code === 'statement_timeout' && sqlstate === null) {
        return `the save got no answer within the store's deadline: check that the server is up and not blocked (a transaction holding a lock on ${table}: ${blockers})`;
      }
      const name = code;
      const setting = timeouts?.[name];
      const ms = setting ? settingMs(setting.value) : NaN;
      if (setting && ms > 0) {
        const what = describeSetting(name, setting);
        if (name === 'lock_timeout' && ms < 1000) {
          return `${what}: a save that waits longer for a row lock is cancelled, and concurrent saves of one user always wait for each other's row lock; raise it for the application's role: ${resetHint(name, setting)}`;
        }
        if (name === 'statement_timeout' && ms < 5000) {
          return `${what}: a save that takes longer is cancelled (long sessions and waits for a row lock take longer); raise it for the application's role: ${resetHint(name, setting)}`;
        }
        return `${what} fired: a transaction held a lock on ${table} longer than that: ${blockers}`;
      }
      if (code === 'statement_timeout') return `the statement was cancelled (pg_cancel_backend, or a statement_timeout set by the session): ${blockers}`;
      return `a long transaction holds a lock on ${table}: ${blockers}`;
    }
    case 'prepared_statement_conflict':
      return 'a transaction-mode pooler (PgBouncer before 1.21, RDS Proxy, Supavisor) mixed server connections under a named prepared statement; tsm retries unnamed by itself, and --no-prepare starts that way';
    case 'serialization_failure':
      return 'concurrent transactions conflicted even after retries: lower --concurrency, check default_transaction_isolation';
    case 'too_many_connections':
      return 'lower --concurrency, or raise max_connections / the role CONNECTION LIMIT';
    case 'connection_error':
      return `check that the server is up and reachable (${doctor} shows the connection check)`;
    default:
      if (sqlstate === '42P01') return `telegram_sessions does not exist in this schema: ${up} (or pass --schema)`;
      if (sqlstate === 'P0003') return `several rows for one user id (the function's UPDATE … INTO found more than one): ${dedupe}, then ${up}`;
      if (sqlstate === '3F000') return `the schema does not exist: ${up} creates it (or pass --schema)`;
      if (sqlstate === '23514') {
        return `a CHECK constraint or the partition bounds of ${table} reject the row (a LIST-partitioned table needs a DEFAULT partition for user ids it does not list; the test user ids start with 'tsm-test:')`;
      }
      return `see the error above; ${doctor} checks the whole schema`;
  }
}
