/**
 * What test-write and bench share: the rows a run creates (TestRows: their own tenant and a
 * user-id prefix with a random run id, e.g. `tsm-test:3f9c2a1b:7`; every id handed out is
 * remembered, and removal deletes exactly those ids within that tenant, so a run never touches a
 * row it did not create), and the run around them (openWriteRun: an admin connection, a pool for
 * the writes, and ONE cleanup that closes the pool after the writes in flight and removes the rows,
 * registered on the CLI's cleanup stack so Ctrl-C runs the same code).
 *
 * Before anything is written, the run checks the server: a hot standby or a read-only default
 * (server, database or role) is refused at once (exit 1, code read_only), with no retries and
 * nothing half done. It also reads the role's timeouts (lock_timeout, statement_timeout,
 * idle_in_transaction_session_timeout and where each was set) so that a failure can name the one
 * that fired. tsm's own statements on the admin connection (read-back, counts, removal) override
 * them inside their transactions (`SET LOCAL`, pooler-safe); the writes under test do not: they
 * see what the application sees. Comparisons on the table's varchar columns name pg_catalog's
 * operator (`OPERATOR(pg_catalog.=)`): tsm may run as a privileged role whose search_path holds a
 * schema others can create in, and a planted `=(varchar, varchar)` would otherwise run as tsm.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Client, ClientBase, Pool } from 'pg';
import type { ConnectionSettings } from '../config.js';
import { classifyError } from '../db/classify.js';
import { connect } from '../db/connect.js';
import { qualify, quoteLiteral } from '../db/ident.js';
import { readOnlyReason, readServerState, type ServerState } from '../db/server.js';
import { FailError } from '../errors.js';
import { savePoolConfig } from '../store/pool.js';
import type { SessionStore } from '../store/store.js';
import type { Cleanups } from './cleanup.js';

const BATCH = 10_000;

/** What tsm's own statements on the admin connection allow themselves, whatever the role says. */
export const OWN_WORK_SETTINGS = { statement_timeout: '300s', lock_timeout: '10s', idle_in_transaction_session_timeout: '0' } as const;

/**
 * Runs `fn` in a transaction whose timeouts are tsm's own (SET LOCAL: they end with the
 * transaction, so nothing is left on a pooled server connection). Rolled back on failure.
 */
export async function ownWork<T>(db: ClientBase, fn: () => Promise<T>): Promise<T> {
  // One round trip for BEGIN and the settings: no moment idle in a transaction under the role's
  // idle_in_transaction_session_timeout before tsm's own value is in force. Constants only.
  await db.query(
    `BEGIN; SET LOCAL statement_timeout = '${OWN_WORK_SETTINGS.statement_timeout}'; SET LOCAL lock_timeout = '${OWN_WORK_SETTINGS.lock_timeout}'; ` +
      `SET LOCAL idle_in_transaction_session_timeout = '${OWN_WORK_SETTINGS.idle_in_transaction_session_timeout}'`,
  );
  try {
    const r = await fn();
    await db.query('COMMIT');
    return r;
  } catch (err) {
    await db.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** One timeout setting as the test role's sessions get it. */
export interface TimeoutSetting {
  /** As SHOW prints it ('0' when off, else e.g. '1ms', '200ms', '5s'). */
  value: string;
  /** Where it was set (pg_settings.source: 'default', 'user' = the role, 'database', 'database user', 'configuration file', …). */
  source: string;
}

export interface ServerTimeouts {
  lock_timeout: TimeoutSetting;
  statement_timeout: TimeoutSetting;
  idle_in_transaction_session_timeout: TimeoutSetting;
}

const TIMEOUT_NAMES = ['lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout'] as const;

/** The session's timeouts and where each came from (one round trip, read-only). */
export async function readTimeouts(db: ClientBase): Promise<ServerTimeouts> {
  const r = await db.query<{ name: (typeof TIMEOUT_NAMES)[number]; value: string; source: string }>(
    `SELECT name, pg_catalog.current_setting(name) AS value, source FROM pg_catalog.pg_settings WHERE name = ANY($1::text[])`,
    [TIMEOUT_NAMES],
  );
  const out = {} as ServerTimeouts;
  for (const n of TIMEOUT_NAMES) {
    const row = r.rows.find((x) => x.name === n);
    out[n] = { value: row?.value ?? '0', source: row?.source ?? 'default' };
  }
  return out;
}

/** "1ms, set for the role" — for messages. */
export function describeSetting(name: string, s: TimeoutSetting): string {
  const where: Record<string, string> = {
    user: 'set for the role (ALTER ROLE … SET)',
    database: 'set for the database (ALTER DATABASE … SET)',
    'database user': 'set for the role in this database (ALTER ROLE … IN DATABASE … SET)',
    'configuration file': 'set in postgresql.conf',
    session: 'set by the session',
    client: 'set by the connection (options)',
    default: "PostgreSQL's default",
  };
  return `${name} = ${s.value}, ${where[s.source] ?? `source: ${s.source}`}`;
}

export class TestRows {
  readonly runId = randomBytes(4).toString('hex');
  readonly prefix: string;
  private readonly ids: string[] = [];

  constructor(
    readonly tenant: string,
    readonly schema: string,
  ) {
    this.prefix = `${tenant}:${this.runId}:`;
  }

  /** A fresh user id of this run. */
  next(): string {
    const id = `${this.prefix}${this.ids.length + 1}`;
    this.ids.push(id);
    return id;
  }

  /** All user ids handed out so far. */
  all(): readonly string[] {
    return this.ids;
  }

  /** Copy-paste SQL that removes this run's rows (for messages when tsm could not). */
  deleteSql(): string {
    return (
      `DELETE FROM ${qualify(this.schema, 'telegram_sessions')} WHERE tenant_id = ${quoteLiteral(this.tenant)} ` +
      `AND user_id LIKE ${quoteLiteral(this.prefix + '%')};`
    );
  }

  /**
   * Deletes this run's rows (by exact user id, within the test tenant); returns how many. Each
   * batch is its own transaction with tsm's own timeouts (a role's 200 ms statement_timeout must
   * not leave test rows behind).
   */
  async remove(db: ClientBase): Promise<number> {
    let removed = 0;
    for (let i = 0; i < this.ids.length; i += BATCH) {
      const r = await ownWork(db, () =>
        db.query(`DELETE FROM ${qualify(this.schema, 'telegram_sessions')} WHERE tenant_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) ANY($2::varchar[])`, [
          this.tenant,
          this.ids.slice(i, i + BATCH),
        ]),
      );
      removed += r.rowCount ?? 0;
    }
    return removed;
  }

  /** Rows per user id for the given ids (0 for an id with no row), in that order. */
  static async counts(db: ClientBase, schema: string, ids: readonly string[]): Promise<number[]> {
    if (ids.length === 0) return [];
    const r = await ownWork(db, () => db.query<{ n: number }>(
      `SELECT (SELECT count(*)::int FROM ${qualify(schema, 'telegram_sessions')} t WHERE t.user_id OPERATOR(pg_catalog.=) u.id) AS n
         FROM unnest($1::varchar[]) WITH ORDINALITY AS u(id, ord) ORDER BY u.ord`,
      [ids],
    ));
    return r.rows.map((x) => x.n);
  }
}

/** The connect timeout of the settings in ms (command line, URL, PGCONNECT_TIMEOUT, or 10 s). */
export function connectTimeoutMs(settings: ConnectionSettings): number {
  return settings.connectTimeout !== undefined ? settings.connectTimeout * 1000 : (settings.pg.connectionTimeoutMillis ?? 10_000);
}

/** No table or no schema: then no row of ours can exist either. */
export const NOTHING_THERE = new Set(['42P01', '3F000']);

export interface WriteRunOptions {
  settings: ConnectionSettings;
  schema: string;
  /** The run's own tenant ('tsm-test', 'tsm-bench'). */
  tenant: string;
  /** For messages: 'test' → "the test rows". */
  label: string;
  /** Size of the pool the writes go through. */
  connections: number;
  idleTimeoutMillis: number;
  /** --keep: leave the rows (the cleanup then only closes connections). */
  keep: boolean;
  cleanups: Cleanups;
}

export interface Finished {
  /** Rows removed (null when kept or when removal failed). */
  removed: number | null;
  /** Why removal failed, one line (null when it did not). */
  cleanupError: string | null;
  /** One line for the end of the output: 'test rows removed', '… kept', 'could not remove …'. */
  note: string;
}

export interface WriteRun {
  readonly admin: Client;
  /** What the server is (checked writable before anything was written). */
  readonly server: ServerState;
  /** The role's timeouts, to name the one that fired. */
  readonly timeouts: ServerTimeouts;
  readonly pool: Pool;
  readonly rows: TestRows;
  readonly store: SessionStore;
  /** Call when a row of ours may exist (a save succeeded, or a connection broke with the outcome unknown). */
  wrote(): void;
  /** Closes the store and the pool (after the writes in flight), removes the rows, closes admin. Once. */
  finish(): Promise<Finished>;
}

/** The backend pids of a pool's connections (for the emergency cancel). */
function trackPids(pool: Pool): Set<number> {
  const pids = new Set<number>();
  pool.on('connect', (c) => {
    // pg keeps the backend pid on the client (from BackendKeyData); it is not in the typings.
    const pid = (c as unknown as { processID: number | null }).processID;
    if (pid) pids.add(pid);
  });
  return pids;
}

/** Deletes the run's rows on `admin`; a broken admin connection gets one fresh try. */
async function removeRows(admin: Client, settings: ConnectionSettings, rows: TestRows): Promise<number> {
  if (rows.all().length === 0) return 0;
  try {
    return await rows.remove(admin);
  } catch (err) {
    const c = classifyError(err);
    if (c.sqlstate !== null && NOTHING_THERE.has(c.sqlstate)) return 0;
    if (c.code !== 'connection_error') throw err;
    const fresh = await connect(settings);
    try {
      return await rows.remove(fresh);
    } finally {
      await fresh.end().catch(() => {});
    }
  }
}

/**
 * Last resort (cleanup too slow, or a second Ctrl-C): cancel our statements, delete our rows, on a
 * fresh connection. Behind a pooler the pids pg saw are the pooler's keys, not backends: no cancel.
 */
async function emergencyCleanup(settings: ConnectionSettings, pids: Set<number>, proxied: boolean, rows: TestRows, keep: boolean): Promise<void> {
  const c = new pg.Client({ ...settings.pg, connectionTimeoutMillis: 3000 });
  c.on('error', () => {});
  try {
    await c.connect();
    if (pids.size > 0 && !proxied) await ownWork(c, () => c.query('SELECT pg_catalog.pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [[...pids]]));
    if (!keep) await rows.remove(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/**
 * Connects the admin client (ConnectError, exit 3, when the server cannot be reached), makes the
 * pool and the store, and registers the run's cleanup. The caller does its writes, then awaits
 * finish() on every path; Ctrl-C runs the same finish() through the cleanup stack.
 */
export async function openWriteRun(o: WriteRunOptions, makeStore: (pool: Pool, wrote: () => void) => Promise<SessionStore> | SessionStore): Promise<WriteRun> {
  const admin = await connect(o.settings);
  admin.on('error', () => {});
  let server: ServerState;
  let timeouts: ServerTimeouts;
  try {
    server = await readServerState(admin);
    const why = readOnlyReason(server);
    if (why !== null) {
      throw new FailError(why, {
        code: 'read_only',
        data: { database: o.settings.display, in_recovery: server.inRecovery, default_transaction_read_only: server.defaultReadOnly },
      });
    }
    timeouts = await readTimeouts(admin);
  } catch (err) {
    await admin.end().catch(() => {});
    throw err;
  }
  const rows = new TestRows(o.tenant, o.schema);
  const pool = new pg.Pool(savePoolConfig(o.settings.pg, connectTimeoutMs(o.settings), { max: o.connections, idleTimeoutMillis: o.idleTimeoutMillis }));
  pool.on('error', () => {});
  const pids = trackPids(pool);
  let wrote = false;
  const markWrote = (): void => {
    wrote = true;
  };
  let store: SessionStore;
  try {
    store = await makeStore(pool, markWrote);
  } catch (err) {
    await pool.end().catch(() => {});
    await admin.end().catch(() => {});
    throw err;
  }
  const what = `${o.label} rows`;

  let finishing: Promise<Finished> | undefined;
  const finish = (): Promise<Finished> =>
    (finishing ??= (async (): Promise<Finished> => {
      // After the writes in flight have finished (pool.end waits for them).
      await store.close();
      await pool.end().catch(() => {});
      let removed: number | null = null;
      let cleanupError: string | null = null;
      if (!o.keep) {
        try {
          removed = wrote ? await removeRows(admin, o.settings, rows) : 0;
        } catch (err) {
          const c = classifyError(err);
          cleanupError = `${c.code}${c.sqlstate ? ` (${c.sqlstate})` : ''}: ${c.message.split('\n')[0]}`;
        }
      }
      await admin.end().catch(() => {});
      const note = o.keep
        ? `${what} kept (${rows.all().length} user ids ${rows.prefix}*)`
        : cleanupError
          ? `could not remove the ${what} (${cleanupError}); remove them with: ${rows.deleteSql()}`
          : `${what} removed`;
      return { removed, cleanupError, note };
    })());

  const handle = o.cleanups.push({
    what: o.keep ? 'stopping' : `stopping; removing the ${what}`,
    run: async () => (await finish()).note,
    emergencyWhat: 'cancelling our queries',
    emergency: () =>
      emergencyCleanup(o.settings, pids, server.proxied, rows, o.keep).then(
        () => (o.keep ? `${what} kept` : `${what} removed`),
        (err: unknown) => {
          const c = classifyError(err);
          return `could not remove the ${what} (${c.code}: ${c.message.split('\n')[0]}); remove them with: ${rows.deleteSql()}`;
        },
      ),
  });

  return {
    admin,
    server,
    timeouts,
    pool,
    rows,
    store,
    wrote: markWrote,
    finish: async () => {
      const f = await finish();
      handle.release();
      return f;
    },
  };
}
