/** tsm doctor as a library: run every check on a connected client. */
import type { Client } from 'pg';
import { runChecks } from './runner.js';
import type { DoctorEnv, DoctorReport, Summary } from './types.js';

export { CHECK_IDS, CHECKS, findCheck } from './registry.js';
export type { CheckResult, DoctorEnv, DoctorReport, Summary } from './types.js';

export function summarize(checks: { status: string }[]): Summary {
  const s: Summary = { ok: 0, warn: 0, fail: 0, skipped: 0 };
  for (const c of checks) s[c.status as keyof Summary] += 1;
  return s;
}

/** Runs every check; `database` is the masked URL to report. Never writes. */
export async function runDoctor(client: Client, env: DoctorEnv, database: string): Promise<DoctorReport> {
  const { results, serverVersion } = await runChecks(client, env);
  return { database, server_version: serverVersion, schema: env.schema, checks: results, summary: summarize(results) };
}

/** Exit code: 1 when a check fails (or warns, with failOn 'warn'), else 0. */
export function exitCodeFor(summary: Summary, failOn: 'fail' | 'warn'): number {
  return summary.fail > 0 || (failOn === 'warn' && summary.warn > 0) ? 1 : 0;
}
