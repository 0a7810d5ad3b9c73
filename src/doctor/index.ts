/** tsm doctor as a library: run every check on a connected client. */
import type { Client } from 'pg';
import { runChecks } from './runner.js';
import { DEFAULT_DATA_BUDGET, type DoctorEnv, type DoctorReport, type Summary } from './types.js';

export { CHECK_IDS, CHECKS, findCheck } from './registry.js';
export { DEFAULT_DATA_BUDGET } from './types.js';
export type { CheckResult, DataBudget, DataMode, DoctorEnv, DoctorReport, Summary } from './types.js';

export function summarize(checks: { status: string }[]): Summary {
  const s: Summary = { ok: 0, warn: 0, fail: 0, skipped: 0 };
  for (const c of checks) s[c.status as keyof Summary] += 1;
  return s;
}

/**
 * Runs every check; `database` is the masked URL to report. Never writes: every statement is
 * read-only (catalog queries, counts within env.data's budget, an EXPLAIN in a read-only
 * transaction), so it runs on a hot standby and through a transaction-mode pooler too.
 */
export async function runDoctor(client: Client, env: DoctorEnv, database: string): Promise<DoctorReport> {
  const started = performance.now();
  const { results, serverVersion } = await runChecks(client, env);
  const summary = summarize(results);
  const budget = env.data ?? DEFAULT_DATA_BUDGET;
  return {
    ok: summary.fail === 0,
    database,
    server_version: serverVersion,
    schema: env.schema,
    data: { mode: budget.mode, max_exact_rows: budget.maxExactRows, timeout_ms: budget.timeoutMs },
    checks: results,
    summary,
    duration_seconds: Math.round(performance.now() - started) / 1000,
  };
}

/** Exit code: 1 when a check fails (or warns, with failOn 'warn'), else 0. */
export function exitCodeFor(summary: Summary, failOn: 'fail' | 'warn'): number {
  return summary.fail > 0 || (failOn === 'warn' && summary.warn > 0) ? 1 : 0;
}
