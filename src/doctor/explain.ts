/** `tsm doctor --explain <id>`: what a check looks at, why it matters, the SQL it runs, its remedy. */
import type { Check, DoctorEnv } from './types.js';

export interface Explanation {
  id: string;
  title: string;
  severity: string;
  looks_at: string;
  why: string;
  /** The SQL as run; `$1` is the schema name (catalog checks). */
  sql: string;
  parameters: Record<string, string>;
  remedy: string;
}

export function explain(check: Check, env: DoctorEnv): Explanation {
  const sql = check.kind === 'catalog' ? check.sql : check.sql(env);
  return {
    id: check.id,
    title: check.title,
    severity: check.severity,
    looks_at: check.looksAt,
    why: check.why,
    sql,
    parameters: /\$1\b/.test(sql) ? { $1: env.schema } : {},
    remedy: check.remedy(env),
  };
}
