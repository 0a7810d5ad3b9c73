/** `tsm doctor --explain <id>`: what a check looks at, why it matters, the SQL it runs, its remedy. */
import type { ChalkInstance } from 'chalk';
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

/** Wraps prose at `width` columns. */
function wrap(text: string, width: number, indent = '  '): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width - indent.length) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(indent + line);
  return lines.join('\n');
}

export function renderExplanation(e: Explanation, style: ChalkInstance, width = 100): string {
  const w = Math.max(60, Math.min(width, 120));
  const block = (s: string): string =>
    s
      .split('\n')
      .map((l) => '  ' + l)
      .join('\n');
  const params = Object.entries(e.parameters)
    .map(([k, v]) => `${k} is the schema: '${v}'`)
    .join(', ');
  return [
    `${style.bold(e.id)}: ${e.title}`,
    `  not ok: ${e.severity}`,
    '',
    style.bold('What it looks at'),
    wrap(e.looks_at, w),
    '',
    style.bold('Why it matters'),
    wrap(e.why, w),
    '',
    style.bold('SQL') + (params ? `  (${params})` : ''),
    block(e.sql),
    '',
    style.bold('Remedy when not ok'),
    block(e.remedy),
  ].join('\n');
}
