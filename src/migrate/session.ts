/**
 * Settings every migrate connection starts with, and small shared pieces: the notes channel
 * (migrations describe what they decided as SQL comment statements; tsm shows them instead of
 * sending them) and reading a table's blockers for error messages.
 */
import type { Client } from 'pg';
import { qualify } from '../db/ident.js';

/**
 * lock_timeout for every statement, and the target schema for the migrations (`tsm.schema`).
 * Migrating sessions also lift statement_timeout: a concurrent index build on a large table may
 * rightly take minutes, and killing it halfway only leaves an INVALID index; lock_timeout is what
 * protects the application's traffic. Read-only (--dry-run) sessions keep the server's
 * statement_timeout, and every transaction in them refuses to write, whatever a migration tries.
 */
export async function prepareSession(client: Client, schema: string, lockTimeoutMs: number, readOnly = false): Promise<number> {
  const r = await client.query(
    `SELECT set_config('lock_timeout', $1::text, false),
            set_config('tsm.schema', $2::text, false),
            ${readOnly ? "set_config('default_transaction_read_only', 'on', false)," : "set_config('statement_timeout', '0', false),"}
            current_setting('server_version_num')::int AS version`,
    [`${lockTimeoutMs}ms`, schema],
  );
  return r.rows[0].version as number;
}

/** `-- a note;` (comment lines only, optionally ending in `;`). */
export function noteOf(sql: string): string | null {
  const lines = sql.split('\n').map((l) => l.trim()).filter((l) => l !== '' && l !== ';');
  if (lines.length === 0 || !lines.every((l) => l.startsWith('--'))) return null;
  return lines.map((l) => l.replace(/^--\s?/, '').replace(/;$/, '')).join(' ');
}

export interface Blocker {
  pid: number;
  mode: string;
  state: string | null;
  xact_seconds: number | null;
}

/**
 * Other sessions holding a lock on the table (never their query text: it may hold a session
 * string). Used to say who blocked a migration when its lock_timeout retries ran out.
 */
export async function tableBlockers(client: Client, schema: string, table = 'telegram_sessions'): Promise<Blocker[]> {
  const r = await client.query(
    `SELECT l.pid, string_agg(DISTINCT l.mode, '+') AS mode, a.state,
            round(extract(epoch FROM now() - a.xact_start))::int AS xact_seconds
       FROM pg_catalog.pg_locks l
       LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
        AND l.relation = to_regclass($1::text)
      GROUP BY l.pid, a.state, a.xact_start
      ORDER BY a.xact_start NULLS LAST
      LIMIT 5`,
    [qualify(schema, table)],
  );
  return r.rows as Blocker[];
}

export function describeBlockers(blockers: Blocker[]): string {
  if (blockers.length === 0) return '';
  const each = blockers.map(
    (b) => `pid ${b.pid} (${b.state ?? 'unknown state'}${b.xact_seconds != null ? `, transaction open ${b.xact_seconds} s` : ''}, holds ${b.mode})`,
  );
  return `; holding locks on the table: ${each.join(', ')}`;
}

/** INVALID indexes on the table that no build is working on (left by a failed concurrent build). */
export async function invalidLeftovers(client: Client, schema: string, table = 'telegram_sessions'): Promise<string[]> {
  const r = await client.query(
    `SELECT ic.relname::text AS name
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = to_regclass($1::text) AND NOT i.indisvalid
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
      ORDER BY 1`,
    [qualify(schema, table)],
  );
  return r.rows.map((x) => x.name as string);
}
