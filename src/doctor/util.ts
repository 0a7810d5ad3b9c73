/** Small helpers shared by the doctor checks (names, remedy wording). */
import { qualify, quoteIdent } from '../db/ident.js';
import { shownIdent } from '../report/names.js';
import { tsmCommand as shellCommand } from '../report/shell.js';
import type { DoctorEnv } from './types.js';

export { shownIdent };

export const TABLE = 'telegram_sessions';
export const FUNCTION = 'upsert_telegram_session';
export const UNIQUE_INDEX = 'telegram_sessions_user_id_unique';

/** "public"."telegram_sessions" */
export function tableRef(env: DoctorEnv): string {
  return qualify(env.schema, TABLE);
}

/** `tsm migrate up`, with `--schema X` (shell-quoted: src/report/shell.ts) when the schema is not the default. */
export function tsmCommand(env: DoctorEnv, command: string): string {
  return shellCommand(env.schema, command);
}

/** A remedy: commands first, then (optionally) the SQL to run by hand. */
export function remedyText(commands: string[], sql: string[] = [], sqlLead?: string): string {
  const lines = [...commands];
  if (sql.length > 0) {
    lines.push(sqlLead ?? (commands.length > 0 ? 'or by hand:' : 'run:'));
    lines.push(...sql.map((s) => '  ' + s));
  }
  return lines.join('\n');
}

/** The SQL that builds the unique index the way tsm's migration does. */
export function createUniqueIndexSql(env: DoctorEnv): string {
  return `CREATE UNIQUE INDEX CONCURRENTLY ${quoteIdent(UNIQUE_INDEX)} ON ${tableRef(env)} (user_id) WHERE user_id IS NOT NULL;`;
}

export function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Function or statement body without comments, for pattern checks. */
export function stripSqlComments(body: string): string {
  return body.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/--[^\n]*/g, ' ');
}

/** `(user_id IS NOT NULL)` → `user_idisnotnull`: compares predicates regardless of spacing and parentheses. */
export function normalizePredicate(text: string): string {
  return text.toLowerCase().replace(/[\s()"]/g, '');
}

/** public.telegram_sessions (quoted only where needed), for details. */
export function shownTable(env: DoctorEnv): string {
  return `${shownIdent(env.schema)}.${TABLE}`;
}

/** The remedy for a missing unique index on user_id (shared by index.user-id-unique and index.on-conflict). */
export function uniqueIndexRemedy(env: DoctorEnv): string {
  return remedyText(
    [
      `${tsmCommand(env, 'migrate up')}   (builds the unique index CONCURRENTLY; writers are not blocked)`,
      `if data.duplicates fails, run ${tsmCommand(env, 'dedupe')} first`,
    ],
    [createUniqueIndexSql(env)],
  );
}
