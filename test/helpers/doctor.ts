/** Runs `tsm doctor --json` for real and indexes its checks by id (used by the doctor-*.test.ts files). */
import assert from 'node:assert/strict';
import { runTsm, type RunResult } from './cli.js';

export interface DoctorCheck {
  id: string;
  title: string;
  status: 'ok' | 'warn' | 'fail' | 'skipped';
  severity: 'fail' | 'warn';
  detail: string;
  remedy: string | null;
  exact: boolean;
}

export interface DoctorJson {
  ok: boolean;
  database: string;
  server_version: string;
  schema: string;
  data: { mode: 'budget' | 'exact' | 'estimate'; max_exact_rows: number; timeout_ms: number };
  checks: DoctorCheck[];
  summary: { ok: number; warn: number; fail: number; skipped: number };
  duration_seconds: number;
}

export interface DoctorRun extends RunResult {
  report: DoctorJson;
  check(id: string): DoctorCheck;
  /** id → status, for deepEqual on the whole picture. */
  statuses: Record<string, string>;
}

export const ALL_IDS = [
  'connection',
  'table',
  'columns.required',
  'columns.session-types',
  'columns.diagnostics',
  'index.user-id-unique',
  'index.invalid',
  'index.on-conflict',
  'data.duplicates',
  'data.null-user-id',
  'function.upsert',
  'privileges',
  'migrations',
  'server.writable',
];

export async function doctor(url: string, extra: string[] = []): Promise<DoctorRun> {
  const r = await runTsm(['doctor', '--json', '--database-url', url, ...extra]);
  assert.equal(r.stderr, '', `doctor wrote to stderr: ${r.stderr}`);
  const report = r.json<DoctorJson>();
  assert.deepEqual(
    report.checks.map((c) => c.id),
    ALL_IDS,
    'every check, in the design order',
  );
  const statuses = Object.fromEntries(report.checks.map((c) => [c.id, c.status]));
  return {
    ...r,
    report,
    statuses,
    check(id: string) {
      const c = report.checks.find((x) => x.id === id);
      assert.ok(c, `no check ${id}`);
      return c;
    },
  };
}

/** Every status ok except the ones given. */
export function allOkExcept(overrides: Record<string, string>): Record<string, string> {
  return Object.fromEntries(ALL_IDS.map((id) => [id, overrides[id] ?? 'ok']));
}

/** The copy-paste SQL of a remedy: the indented lines after "or by hand:" / "run…:". */
export function remedySql(remedy: string | null): string[] {
  assert.ok(remedy, 'expected a remedy');
  return remedy
    .split('\n')
    .filter((l) => l.startsWith('  ') && !l.trimStart().startsWith('--'))
    .map((l) => l.trim());
}
