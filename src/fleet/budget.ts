/**
 * The fleet's connection budget: how many connections tsm may hold at once on one server, so a
 * fleet of 200 databases on a shared server cannot exhaust `max_connections`.
 *
 * Default: half of the connections the server has free when the first target there starts
 * (`max_connections` − `superuser_reserved_connections` − `reserved_connections` (PostgreSQL 16+)
 * − the client connections in use), at least 1, at most 64. `--connection-budget N` sets it.
 * Half, because the applications on that server keep growing while tsm runs; 64, because more
 * concurrent DDL on one server buys nothing (the work is I/O on the same disks).
 */
import type { Client } from 'pg';

export const MAX_DEFAULT_BUDGET = 64;

export interface ServerRoom {
  max_connections: number;
  /** superuser_reserved_connections + reserved_connections. */
  reserved: number;
  /** Client connections in use, not counting the one that asked. */
  in_use: number;
  /** What is left for ordinary roles. */
  free: number;
}

/** One read-only round trip (pg_settings and pg_stat_activity are readable by every role). */
export async function readServerRoom(client: Client): Promise<ServerRoom> {
  const r = await client.query<{ max: number; reserved: number; in_use: number }>(
    `SELECT pg_catalog.current_setting('max_connections')::int AS max,
            (SELECT coalesce(sum(setting::int), 0)::int FROM pg_catalog.pg_settings
              WHERE name IN ('superuser_reserved_connections', 'reserved_connections')) AS reserved,
            (SELECT count(*)::int FROM pg_catalog.pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid()) AS in_use`,
  );
  const row = r.rows[0]!;
  return { max_connections: row.max, reserved: row.reserved, in_use: row.in_use, free: Math.max(0, row.max - row.reserved - row.in_use) };
}

/** The default budget for a server with this much room. */
export function defaultBudget(room: ServerRoom): number {
  return Math.max(1, Math.min(MAX_DEFAULT_BUDGET, Math.floor(room.free / 2)));
}
