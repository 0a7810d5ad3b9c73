/**
 * `tsm doctor --metrics-file`: the run as Prometheus metrics in node_exporter's textfile-collector
 * format (names fixed: monitoring/ alerts on them).
 *   tsm_doctor_check_status{check="<id>"}  0 ok, 1 warn, 2 fail, -1 skipped
 *   tsm_doctor_run_timestamp_seconds       Unix time the run finished
 *   tsm_doctor_run_duration_seconds        how long it took (connect included)
 *   tsm_doctor_run_ok                      1 when no check failed, else 0
 */
import type { Status } from '../../../doctor/types.js';

export const STATUS_VALUE: Readonly<Record<Status, number>> = { ok: 0, warn: 1, fail: 2, skipped: -1 };

/** A label value: backslash, double quote and newline escaped. */
function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function gauge(name: string, help: string, samples: { labels?: Record<string, string>; value: number }[]): string[] {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`];
  for (const s of samples) {
    const labels = s.labels ? `{${Object.entries(s.labels).map(([k, v]) => `${k}="${label(v)}"`).join(',')}}` : '';
    lines.push(`${name}${labels} ${s.value}`);
  }
  return lines;
}

export interface MetricsRun {
  checks: readonly { id: string; status: Status }[];
  /** Unix milliseconds. */
  finishedAt: number;
  durationSeconds: number;
}

export function doctorMetrics(run: MetricsRun): string {
  const ok = run.checks.every((c) => c.status !== 'fail');
  return (
    [
      ...gauge(
        'tsm_doctor_check_status',
        'Status of each tsm doctor check in the last run: 0 ok, 1 warn, 2 fail, -1 skipped.',
        run.checks.map((c) => ({ labels: { check: c.id }, value: STATUS_VALUE[c.status] })),
      ),
      ...gauge('tsm_doctor_run_timestamp_seconds', 'Unix time the last tsm doctor run finished.', [{ value: Math.round(run.finishedAt / 1000) }]),
      ...gauge('tsm_doctor_run_duration_seconds', 'How long the last tsm doctor run took, connecting included.', [
        { value: Math.round(run.durationSeconds * 1000) / 1000 },
      ]),
      ...gauge('tsm_doctor_run_ok', 'Whether the last tsm doctor run found no failing check (1) or at least one (0).', [{ value: ok ? 1 : 0 }]),
    ].join('\n') + '\n'
  );
}
