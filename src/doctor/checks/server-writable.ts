import type { Client } from 'pg';
import { SERVER_STATE_SQL, readServerState } from '../../db/server.js';
import { tsmCommand } from '../../report/shell.js';
import type { CustomCheck, DoctorEnv } from '../types.js';
import { remedyText, shownIdent, sqlName } from '../util.js';

/** A per-role or per-database setting that turns default_transaction_read_only on for this session. */
interface ReadOnlySetting {
  /** null: every role (ALTER DATABASE … SET). */
  role: string | null;
  /** null: every database (ALTER ROLE … SET). */
  database: string | null;
  value: string;
}

/** Where this session's default_transaction_read_only comes from. */
export interface WritableRow {
  /** pg_settings.source: default, configuration file, database, user, database user, client, … */
  source: string;
  login_role: string;
  database: string;
  settings: ReadOnlySetting[];
}

const SOURCE_SQL = `SELECT s.source::text AS source, session_user::text AS login_role, current_database()::text AS database,
       coalesce((SELECT json_agg(json_build_object('role', r.rolname, 'database', d.datname,
                                                   'value', substr(cfg, length('default_transaction_read_only=') + 1)))
                   FROM pg_catalog.pg_db_role_setting drs
                   LEFT JOIN pg_catalog.pg_roles r    ON r.oid = drs.setrole
                   LEFT JOIN pg_catalog.pg_database d ON d.oid = drs.setdatabase,
                        unnest(drs.setconfig) cfg
                  WHERE cfg LIKE 'default_transaction_read_only=%'
                    AND drs.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))
                    AND drs.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))),
                '[]'::json) AS settings
  FROM pg_catalog.pg_settings s
 WHERE s.name = 'default_transaction_read_only'`;

const truthy = (v: string): boolean => /^(on|true|yes|1|t|y)$/i.test(v.trim().replace(/^'(.*)'$/, '$1'));

function readOnlyRemedy(row: WritableRow | undefined): string {
  const primary = 'or connect to a server (or as a role) whose sessions can write';
  if (!row) return remedyText([`find where default_transaction_read_only = on is set (SHOW default_transaction_read_only), ${primary}`]);
  const sql = row.settings
    .filter((s) => truthy(s.value))
    .map((s) => {
      if (s.role !== null && s.database !== null) return `ALTER ROLE ${sqlName(s.role)} IN DATABASE ${sqlName(s.database)} RESET default_transaction_read_only;`;
      if (s.role !== null) return `ALTER ROLE ${sqlName(s.role)} RESET default_transaction_read_only;`;
      return `ALTER DATABASE ${sqlName(s.database ?? row.database)} RESET default_transaction_read_only;`;
    });
  if (row.source === 'configuration file' || row.source === 'default' || sql.length === 0) {
    if (row.source === 'client' || row.source === 'environment variable') {
      return remedyText([`the connection itself sets it (options=-c default_transaction_read_only=on in the URL, or PGOPTIONS): remove that, ${primary}`]);
    }
    if (row.source === 'configuration file') {
      sql.push('ALTER SYSTEM SET default_transaction_read_only = off;', 'SELECT pg_catalog.pg_reload_conf();');
    }
  }
  return remedyText(
    [`if the server is read-only on purpose (maintenance), run doctor again afterwards; ${primary}`],
    sql,
    'as a superuser (or the owner of the role or database):',
  );
}

export const serverWritable: CustomCheck<WritableRow> = {
  id: 'server.writable',
  title: 'Server accepts session writes',
  severity: 'fail',
  kind: 'custom',
  requires: [],
  looksAt:
    'pg_is_in_recovery() (a hot standby) and default_transaction_read_only as this session sees it: set in ' +
    'postgresql.conf, on the database, on the role, or on the role in the database (pg_settings.source, ' +
    'pg_db_role_setting). Also whether a pooler or proxy sits between tsm and the server (the process id the ' +
    'connection announced is not the backend\'s). Run doctor as the application\'s role: a role setting applies to that role only.',
  why:
    'On a hot standby every write fails with 25006 (read_only): doctor can check the schema there (everything it ' +
    'runs is read-only), but migrate, dedupe and the application must target the primary. A primary whose sessions ' +
    'default to read-only (default_transaction_read_only = on for the server, the database or the role) looks ' +
    'healthy to every schema check while every save fails with 25006: the table is fine, the writes are not.',
  example: {
    bad: 'ALTER ROLE app SET default_transaction_read_only = on;   -- every save by app fails with 25006',
    good: 'ALTER ROLE app RESET default_transaction_read_only;',
  },
  catalogSql: SOURCE_SQL,
  sql: () => `${SERVER_STATE_SQL};\n-- and, with the catalog checks:\n${SOURCE_SQL};`,
  async run(client: Client, env: DoctorEnv, _facts, rows) {
    const state = await readServerState(client);
    const through = state.proxied
      ? `; reached through a pooler or proxy: run ${tsmCommand(env.schema, 'migrate up')} through a direct or session-mode URL (tsm dedupe works through either)`
      : '';
    if (state.inRecovery) {
      return {
        status: 'warn',
        detail: `hot standby: schema checked; migrate, dedupe and writes must target the primary${through}`,
        remedy: remedyText([
          'nothing to fix on the standby: point migrate, dedupe, test-write and the application at the primary',
          '(after a failover, check that their URL follows the new primary)',
        ]),
      };
    }
    if (state.defaultReadOnly) {
      const row = rows[0];
      const where = row ? `${row.source === 'default' ? 'set' : `set by ${row.source}`}, role ${shownIdent(row.login_role)}, database ${shownIdent(row.database)}` : '';
      return {
        status: 'fail',
        detail:
          `primary, but its sessions default to read-only (default_transaction_read_only = on${where ? `, ${where}` : ''}): ` +
          'every save fails with 25006 (read_only)',
        remedy: readOnlyRemedy(row),
      };
    }
    return { status: 'ok', detail: `primary, writable${through}` };
  },
  remedy: () => readOnlyRemedy(undefined),
};
