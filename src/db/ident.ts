/**
 * The one place where names become SQL. Text from the command line or the database (schema,
 * table, index, constraint, function and role names) reaches SQL only through quoteIdent /
 * qualify, or as a bind parameter; never spliced into a comment or a literal by hand.
 */
import { UsageError } from '../errors.js';

/** Quotes an SQL identifier ("my""name"). */
export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** schema-qualified, quoted name: "tg"."telegram_sessions". */
export function qualify(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** Quotes an SQL string literal ('it''s'). Only for DDL where parameters are not allowed. */
export function quoteLiteral(value: string): string {
  return "'" + value.replace(/'/g, "''") + "'";
}

/** PostgreSQL keeps NAMEDATALEN - 1 = 63 bytes of an identifier and silently truncates the rest. */
export const MAX_IDENT_BYTES = 63;

/** The first control character (C0, DEL, C1) in `text`, as `U+000A`, or null. */
export function controlCharacter(text: string): string | null {
  const m = /\p{Cc}/u.exec(text);
  return m ? `U+${m[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}` : null;
}

/**
 * Why `name` cannot be used as an identifier, or null when PostgreSQL accepts it (quoted): not
 * empty, at most 63 bytes in UTF-8, no control characters. Quotes, spaces, `;`, `--`, unicode
 * are all fine: every name is quoted where it reaches SQL.
 */
export function identifierProblem(name: string): string | null {
  if (name === '') return 'is empty';
  const cc = controlCharacter(name);
  if (cc !== null) return `contains a control character (${cc})`;
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_IDENT_BYTES) return `is ${bytes} bytes long; PostgreSQL identifiers hold at most ${MAX_IDENT_BYTES} bytes`;
  return null;
}

/** A name for messages: as typed when it needs no quotes (tg), else quoted ("it's ""tg"""). */
export function shownName(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : quoteIdent(name);
}

/** `--schema` (or another option naming an identifier): UsageError (exit 2, one line) unless valid. */
export function validateIdentifier(option: string, name: string): string {
  const problem = identifierProblem(name);
  // JSON.stringify shows control characters escaped: the error stays one line.
  if (problem !== null) throw new UsageError(`${option}: ${JSON.stringify(name)} ${problem}`);
  return name;
}
