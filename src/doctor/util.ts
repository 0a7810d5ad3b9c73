/** Small helpers shared by the doctor checks (names, remedy wording). */
import { quoteIdent } from '../db/ident.js';
import type { DoctorEnv } from './types.js';

export const TABLE = 'telegram_sessions';
export const FUNCTION = 'upsert_telegram_session';
export const UNIQUE_INDEX = 'telegram_sessions_user_id_unique';
/** The shipped migration that builds the unique index (src/migrate, migrations/). */
export const INDEX_MIGRATION = '0004_user_id_unique_index';

/**
 * A quoted identifier that pastes as one line: `"name"` (quotes doubled), or, when the name holds
 * a control character (a newline, a tab…), PostgreSQL's Unicode form `U&"a\000Ab"`, so a remedy
 * copied from an indented terminal block names the right object.
 */
export function sqlName(name: string): string {
  if (!/\p{Cc}/u.test(name)) return quoteIdent(name);
  let body = '';
  for (const ch of name) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') body += '\\\\';
    else if (ch === '"') body += '""';
    else if (/\p{Cc}/u.test(ch)) body += cp > 0xffff ? `\\+${cp.toString(16).padStart(6, '0')}` : `\\${cp.toString(16).padStart(4, '0')}`;
    else body += ch;
  }
  return `U&"${body}"`;
}

/** "schema"."name", each part pasteable (see sqlName). */
export function sqlQualified(schema: string, name: string): string {
  return `${sqlName(schema)}.${sqlName(name)}`;
}

/** A name for details: as typed when it needs no quotes (`tg`), else quoted and pasteable (`"My Table"`, `U&"a\000Ab"`). */
export function shownIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : sqlName(name);
}

/** schema.name for details (the schema left out when it is the table's own). */
export function shownRel(schema: string, name: string, tableSchema?: string): string {
  return schema === tableSchema ? shownIdent(name) : `${shownIdent(schema)}.${shownIdent(name)}`;
}

/**
 * SQL text (from the server, such as pg_get_indexdef, or built here) made pasteable: every quoted
 * identifier holding a control character is rewritten in the `U&"…"` form; string literals are
 * left alone.
 */
export function pasteable(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'") {
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
        else if (sql[j] === "'") break;
        else j++;
      }
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === '"') {
      let j = i + 1;
      let name = '';
      while (j < sql.length) {
        if (sql[j] === '"' && sql[j + 1] === '"') {
          name += '"';
          j += 2;
        } else if (sql[j] === '"') break;
        else name += sql[j++];
      }
      // Already in the U&"…" form: copied as it is.
      out += /u&$/i.test(out) ? sql.slice(i, j + 1) : sqlName(name);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** "public"."telegram_sessions" */
export function tableRef(env: DoctorEnv): string {
  return sqlQualified(env.schema, TABLE);
}

/** A remedy: commands first, then (optionally) the SQL to run by hand, one pasteable statement a line. */
export function remedyText(commands: string[], sql: string[] = [], sqlLead?: string): string {
  const lines = [...commands];
  if (sql.length > 0) {
    lines.push(sqlLead ?? (commands.length > 0 ? 'or by hand:' : 'run:'));
    lines.push(...sql.map((s) => '  ' + pasteable(s)));
  }
  return lines.join('\n');
}

export function plural(n: number, one: string, many = one + 's'): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

/** `(user_id IS NOT NULL)` → `user_idisnotnull`: compares predicates regardless of spacing and parentheses. */
export function normalizePredicate(text: string): string {
  return text.toLowerCase().replace(/[\s()"]/g, '');
}

/** public.telegram_sessions (quoted only where needed), for details. */
export function shownTable(env: DoctorEnv): string {
  return `${shownIdent(env.schema)}.${TABLE}`;
}

/** About 1,234 (rounded), for estimates. */
export function about(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
