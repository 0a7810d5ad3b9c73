import type { Client } from 'pg';
import { HISTORY_TABLE } from '../../migrate/history.js';
import { migrationStatus, type MigrationStatus } from '../../migrate/status.js';
import { tsmCommand } from '../../report/shell.js';
import type { CustomCheck, DoctorEnv, Facts, Outcome } from '../types.js';
import { plural, remedyText, shownIdent, sqlQualified } from '../util.js';

/** The verdict for a migration status (pure, so it is easy to reason about). */
export function judgeMigrations(status: MigrationStatus, env: DoctorEnv): Outcome {
  if (!status.table) {
    return {
      status: 'skipped',
      detail: `no ${shownIdent(env.schema)}.${HISTORY_TABLE} table: the schema is managed elsewhere (or tsm never migrated it)`,
    };
  }
  const names = (state: string): string[] => status.migrations.filter((m) => m.state === state).map((m) => m.name);
  const pending = names('pending');
  const modified = names('modified');
  const missing = names('missing');
  const applied = names('applied').length + modified.length + missing.length;
  const earlier = status.migrations.filter((m) => m.state === 'applied' && m.applied_by_earlier);
  const releases = [...new Set(earlier.map((m) => m.applied_by_earlier))];
  const byEarlier = earlier.length > 0 ? ` (${earlier.length} by an earlier tsm: ${releases.join(', ')})` : '';
  const problems: string[] = [];
  if (pending.length > 0) problems.push(`${pending.length} pending (${pending.join(', ')})`);
  if (modified.length > 0) problems.push(`${modified.length} modified since applied (${modified.join(', ')})`);
  if (missing.length > 0) problems.push(`${plural(missing.length, 'applied migration')} not shipped with this tsm (${missing.join(', ')})`);
  if (problems.length === 0) return { status: 'ok', detail: `${plural(applied, 'migration')} applied${byEarlier}, none pending` };
  const commands: string[] = [];
  if (pending.length > 0) commands.push(tsmCommand(env.schema, 'migrate up'));
  if (modified.length > 0 || missing.length > 0) {
    commands.push(`${tsmCommand(env.schema, 'migrate status')}   (which files differ from what was applied; use the tsm version that applied them)`);
  }
  return { status: 'warn', detail: problems.join('; '), remedy: remedyText(commands) };
}

export const migrations: CustomCheck = {
  id: 'migrations',
  title: 'tsm migrations applied',
  severity: 'warn',
  kind: 'custom',
  requires: [],
  looksAt:
    "The schema's tsm_migrations table (tsm's own history, separate from the application's) against the " +
    'migrations shipped with this tsm: pending, applied, modified since applied (checksum), or applied but ' +
    'not shipped. A migration recorded with the checksum an earlier tsm release gave the same shipped file counts as ' +
    'applied ("by an earlier tsm"). Without a tsm_migrations table the check is skipped: the schema is managed elsewhere.',
  why:
    'A pending migration means the fix (unique index, diagnostic columns, race-free function) is not fully in ' +
    'place; a modified one means the database may not match what the files describe.',
  example: {
    bad: '-- tsm migrate status: 0005_upsert_function pending',
    good: '-- tsm migrate up: every shipped migration applied, none modified',
  },
  sql: (env) =>
    `-- the same comparison as \`${tsmCommand(env.schema, 'migrate status')}\` ($1 = the schema):\n` +
    `SELECT c.oid IS NOT NULL AS table FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n` +
    ` WHERE n.nspname = $1::text AND c.relname = '${HISTORY_TABLE}' AND c.relkind IN ('r', 'p');\n` +
    `SELECT name, run_on, checksum FROM ${sqlQualified(env.schema, HISTORY_TABLE)} ORDER BY run_on, id;\n` +
    '-- then compared (names and SHA-256 checksums) with the migration files shipped with tsm',
  async run(client: Client, env: DoctorEnv, facts: Facts) {
    // The runner read the history before judging the index checks; read again only when that failed (to report why).
    return judgeMigrations(facts.migrations ?? (await migrationStatus(client, env.schema)), env);
  },
  remedy: (env) => remedyText([tsmCommand(env.schema, 'migrate up')]),
};
