import type { CatalogCheck } from '../types.js';

const MIN_VERSION_NUM = 130000;

/** The one row of the connection check. */
export interface ConnectionRow {
  server_version: string;
  server_version_num: number;
  role: string;
  database: string;
}

export const connection: CatalogCheck<ConnectionRow> = {
  id: 'connection',
  title: 'Server reachable and recent enough',
  severity: 'fail',
  kind: 'catalog',
  requires: [],
  example: {
    bad: '-- SELECT version();  PostgreSQL 12.19 …',
    good: '-- SELECT version();  PostgreSQL 15.8 … (13 or later)',
  },
  looksAt: 'The server version (server_version_num), the role tsm is connected as, and the database.',
  why:
    'tsm and its migrations rely on PostgreSQL 13 or later (gen_random_uuid() built in, ' +
    'pg_stat_progress_create_index to tell a running index build from a failed one, ON CONFLICT with ' +
    'partial unique indexes). Older servers are out of community support.',
  sql: `SELECT current_setting('server_version')            AS server_version,
       current_setting('server_version_num')::int     AS server_version_num,
       current_user::text                             AS role,
       current_database()::text                       AS database`,
  evaluate(rows) {
    const r: Partial<ConnectionRow> = rows[0] ?? {};
    const version = String(r.server_version ?? '?');
    const num = Number(r.server_version_num ?? 0);
    const who = `PostgreSQL ${version.split(' ')[0]}, role ${r.role}, database ${r.database}`;
    if (num < MIN_VERSION_NUM) {
      return { status: 'fail', detail: `${who}: below PostgreSQL 13, which tsm requires` };
    }
    return { status: 'ok', detail: who };
  },
  remedy: () => 'upgrade the server to PostgreSQL 13 or later (pg_upgrade, or a dump and restore)',
};
