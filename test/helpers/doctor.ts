/** Runs `tsm doctor --json` for real and indexes its checks by id (used by the doctor-*.test.ts files). */
import assert from 'node:assert/strict';
import { runTsm, type RunResult } from './cli.js';
import { FIXED_COLUMNS, q } from './fixtures.js';

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

/**
 * A partitioned telegram_sessions written by hand (no unique index, no function):
 * - `hash`: PARTITION BY HASH (user_id), `partitions` partitions named telegram_sessions_p<i>;
 * - `list`: PARTITION BY LIST (user_id): p0 ('a'…'m' first letters as values are not possible, so
 *   explicit values '1','2','3'), and a DEFAULT partition;
 * - `range`: PARTITION BY RANGE (created_at), two yearly partitions and a default.
 * `names` overrides partition names (index i → name).
 */
export function partitionedTable(schema: string, by: 'hash' | 'list' | 'range', opts: { partitions?: number; names?: string[] } = {}): string {
  const s = q(schema);
  const t = `${s}.telegram_sessions`;
  const n = opts.partitions ?? 4;
  const name = (i: number): string => `${s}.${q(opts.names?.[i] ?? `telegram_sessions_p${i}`)}`;
  const head = `CREATE SCHEMA IF NOT EXISTS ${s};\n`;
  if (by === 'hash') {
    return (
      head +
      `CREATE TABLE ${t} (${FIXED_COLUMNS}) PARTITION BY HASH (user_id);\n` +
      Array.from({ length: n }, (_, i) => `CREATE TABLE ${name(i)} PARTITION OF ${t} FOR VALUES WITH (MODULUS ${n}, REMAINDER ${i});`).join('\n')
    );
  }
  if (by === 'list') {
    return (
      head +
      `CREATE TABLE ${t} (${FIXED_COLUMNS}) PARTITION BY LIST (user_id);\n` +
      `CREATE TABLE ${name(0)} PARTITION OF ${t} FOR VALUES IN ('1', '2', '3');\n` +
      `CREATE TABLE ${name(1)} PARTITION OF ${t} DEFAULT;`
    );
  }
  return (
    head +
    `CREATE TABLE ${t} (${FIXED_COLUMNS}) PARTITION BY RANGE (created_at);\n` +
    `CREATE TABLE ${name(0)} PARTITION OF ${t} FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\n` +
    `CREATE TABLE ${name(1)} PARTITION OF ${t} DEFAULT;`
  );
}

/**
 * The remedy block of `check` in doctor's human output, as a user would copy it: the indented SQL
 * lines under "or by hand:" / "run…:", with the output's indentation removed (comments dropped).
 */
export function pastedRemedySql(humanOutput: string, check: string): string[] {
  const lines = humanOutput.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^\\S+\\s+${check.replace(/\./g, '\\.')}: `).test(l));
  assert.ok(start >= 0, `no remedy block for ${check} in:\n${humanOutput}`);
  const out: string[] = [];
  for (let i = start + 1; i < lines.length && lines[i] !== ''; i++) {
    const l = lines[i]!;
    if (l.startsWith('        ') && !l.trimStart().startsWith('--')) out.push(l.slice(8));
  }
  return out;
}
