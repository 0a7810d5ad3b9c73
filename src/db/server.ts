/**
 * What kind of server (and what is between tsm and it) a connection reached, read before a command
 * changes anything:
 * - a hot standby (`pg_is_in_recovery()`) or a primary whose sessions default to read-only
 *   (`default_transaction_read_only`, set on the server, the database or the role): writing
 *   commands refuse up front, with no retries and nothing half done;
 * - a pooler or proxy: the BackendKeyData pid the server sent at start-up is not the backend's own
 *   pid (PgBouncer, Supavisor and RDS Proxy hand out their own cancel keys);
 * - whether the server connection stays with this client between transactions (direct, or a
 *   session-mode pool) or changes (a transaction-mode pool), by `detectPooling`.
 */
import type { Client } from 'pg';
import { FailError } from '../errors.js';

export interface ServerState {
  /** pg_is_in_recovery(): a hot standby. */
  inRecovery: boolean;
  /** default_transaction_read_only as this session sees it (server, database or role setting). */
  defaultReadOnly: boolean;
  /** pg_backend_pid() of the server connection that answered. */
  backendPid: number;
  /** The pid the connection announced at start-up differs from the backend's: something is in between. */
  proxied: boolean;
  /** server_version_num */
  versionNum: number;
}

/** One round trip, read-only. */
export async function readServerState(client: Client): Promise<ServerState> {
  const r = await client.query<{ in_recovery: boolean; read_only: string; pid: number; version: number }>(
    `SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
            pg_catalog.current_setting('default_transaction_read_only') AS read_only,
            pg_catalog.pg_backend_pid() AS pid,
            pg_catalog.current_setting('server_version_num')::int AS version`,
  );
  const row = r.rows[0]!;
  const announced = (client as unknown as { processID?: number | null }).processID;
  return {
    inRecovery: row.in_recovery,
    defaultReadOnly: row.read_only === 'on',
    backendPid: row.pid,
    proxied: typeof announced === 'number' && announced !== row.pid,
    versionNum: row.version,
  };
}

/** Why a writing command cannot run on this server (one line), or null when it can. */
export function readOnlyReason(state: ServerState): string | null {
  if (state.inRecovery) return 'read-only server (hot standby): connect to the primary';
  if (state.defaultReadOnly) {
    return 'read-only server (default_transaction_read_only = on for this server, database or role): connect to the primary, or use a role whose sessions can write';
  }
  return null;
}

/** Throws FailError (exit 1) with the reason when the server is read-only; returns the state otherwise. */
export async function assertWritable(client: Client): Promise<ServerState> {
  const state = await readServerState(client);
  const why = readOnlyReason(state);
  if (why !== null) throw new FailError(why);
  return state;
}

export type Pooling = 'direct' | 'session' | 'transaction';

/**
 * Whether `client`'s server connection is its own for the whole session. Direct connections need
 * no probe. Through a pooler, a second connection opens a transaction while `client` is idle: a
 * transaction-mode pool hands it the server connection `client` just used (PgBouncer reuses the
 * most recently released one), or `client`'s next statement lands elsewhere. Either is proof of
 * transaction pooling; a session-mode pool keeps `client`'s server connection for it alone.
 * Other clients of the pool can make one round look like session pooling by chance (seen with two
 * `tsm migrate up` started at once), so the probe runs `rounds` times and any sign of a change wins.
 * The probe changes nothing on the server and leaves no setting behind.
 */
export async function detectPooling(client: Client, state: ServerState, connect: () => Promise<Client>, rounds = 5): Promise<Pooling> {
  if (!state.proxied) return 'direct';
  const pidOf = async (c: Client): Promise<number> => (await c.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0]!.pid;
  const first = await pidOf(client);
  if (first !== state.backendPid) return 'transaction';
  const other = await connect();
  try {
    for (let round = 0; round < rounds; round++) {
      await other.query('BEGIN');
      const otherPid = await pidOf(other);
      await other.query('ROLLBACK');
      if (otherPid === first) return 'transaction';
      if ((await pidOf(client)) !== first) return 'transaction';
    }
  } finally {
    await other.end().catch(() => {});
  }
  return 'session';
}
