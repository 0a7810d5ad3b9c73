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
