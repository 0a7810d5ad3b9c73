/**
 * What to do about each failure test-write (or a save) can report: a command or copy-paste SQL.
 * Suggested commands carry `--schema` (shell-quoted) when the schema is not `public`.
 */
import { qualify } from '../db/ident.js';
import { tsmCommand } from '../report/shell.js';

export function remedyFor(code: string, schema: string, sqlstate?: string | null): string {
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
    case 'statement_timeout':
      return `a long transaction holds a lock on ${table}: SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE wait_event_type = 'Lock' OR state = 'idle in transaction';`;
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
      return `see the error above; ${doctor} checks the whole schema`;
  }
}
