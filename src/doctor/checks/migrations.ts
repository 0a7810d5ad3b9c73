import type { Client } from 'pg';
import { migrationStatus, type MigrationStatus } from '../../migrate/status.js';
import type { CustomCheck, DoctorEnv, Outcome } from '../types.js';
import { plural, remedyText, shownIdent, tsmCommand } from '../util.js';

/** The verdict for a migration status (pure, so it is easy to reason about). */
export function judgeMigrations(status: MigrationStatus, env: DoctorEnv): Outcome {
  if (!status.table) {
    return {
      status: 'skipped',
      detail: `no ${shownIdent(env.schema)}.tsm_migrations table: the schema is managed elsewhere (or tsm never migrated it)`,
    };
  }
  const names = (state: string): string[] => status.migrations.filter((m) => m.state === state).map((m) => m.name);
  const pending = names('pending');
  const modified = names('modified');
  const missing = names('missing');
  const applied = names('applied').length + modified.length + missing.length;
  const problems: string[] = [];
  if (pending.length > 0) problems.push(`${pending.length} pending (${pending.join(', ')})`);
  if (modified.length > 0) problems.push(`${modified.length} modified since applied (${modified.join(', ')})`);
  if (missing.length > 0) problems.push(`${plural(missing.length, 'applied migration')} not shipped with this tsm (${missing.join(', ')})`);
  if (problems.length === 0) return { status: 'ok', detail: `${plural(applied, 'migration')} applied, none pending` };
  const commands: string[] = [];
  if (pending.length > 0) commands.push(tsmCommand(env, 'migrate up'));
  if (modified.length > 0 || missing.length > 0) {
    commands.push(`${tsmCommand(env, 'migrate status')}   (which files differ from what was applied; use the tsm version that applied them)`);
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
    'not shipped. Without a tsm_migrations table the check is skipped: the schema is managed elsewhere.',
  why:
    'A pending migration means the fix (unique index, diagnostic columns, race-free function) is not fully in ' +
    'place; a modified one means the database may not match what the files describe.',
  sql: (env) =>
    `-- the same comparison as \`${tsmCommand(env, 'migrate status')}\`:\n` +
    `SELECT to_regclass('${shownIdent(env.schema).replace(/'/g, "''")}.tsm_migrations');\n` +
    `SELECT name, run_on FROM ${shownIdent(env.schema)}.tsm_migrations ORDER BY run_on, id;\n` +
    '-- then compared (names and checksums) with the migration files shipped with tsm',
  async run(client: Client, env: DoctorEnv) {
    return judgeMigrations(await migrationStatus(client, env.schema), env);
  },
  remedy: (env) => remedyText([tsmCommand(env, 'migrate up')]),
};
