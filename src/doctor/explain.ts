/** `tsm doctor --explain <id>` and docs/checks.md: what a check looks at, why it matters, the SQL it runs, its remedy. */
import { readOnlyText } from './readonly.js';
import type { Check, DoctorEnv, Example } from './types.js';

export interface Explanation {
  id: string;
  title: string;
  severity: string;
  looks_at: string;
  why: string;
  /** The SQL as run; `$1` is the schema name (catalog queries). */
  sql: string;
  parameters: Record<string, string>;
  /** A bad state and the good one, as SQL. */
  example: Example;
  remedy: string;
}

/** The SQL of a check as --explain shows it: every query it can send, in order. */
export function checkSql(check: Check, env: DoctorEnv): string {
  if (check.kind === 'catalog') return check.sql;
  if (check.kind === 'custom') return check.sql(env);
  const parts = [
    '-- with the catalog checks, no scan ($1 = the schema): the planner statistics of every leaf and the indexes that can answer',
    check.planSql + ';',
    '-- then, unless the answer is settled or estimated, the exact query, in its own read-only transaction',
    '-- (statement_timeout = --data-timeout):',
  ];
  for (const v of check.exactVariants(env)) {
    parts.push(`-- ${v.query.path}, when ${v.when}:`);
    parts.push(readOnlyText(v.query.sql, v.query.settings));
  }
  return parts.join('\n');
}

export function explain(check: Check, env: DoctorEnv): Explanation {
  const sql = checkSql(check, env);
  return {
    id: check.id,
    title: check.title,
    severity: check.severity,
    looks_at: check.looksAt,
    why: check.why,
    sql,
    parameters: /\$1\b/.test(sql) ? { $1: env.schema } : {},
    example: check.example,
    remedy: check.remedy(env),
  };
}
