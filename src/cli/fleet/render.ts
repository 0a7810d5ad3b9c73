/** Human output of a fleet run: one row per target (name, masked URL, status, exit code, summary) and a total. */
import type { ChalkInstance } from 'chalk';
import type { FleetRun, StopReason, TargetOutcome, TargetStatus } from '../../fleet/engine.js';
import { renderTable } from '../../report/table.js';

/** The --json document (design, "Fleet"). */
export interface FleetDocument {
  ok: boolean;
  summary: Record<TargetStatus, number>;
  targets: { name: string; url: string; status: TargetStatus; exit_code: number | null; result: unknown }[];
}

export function countStatuses(outcomes: readonly Pick<TargetOutcome, 'status'>[]): Record<TargetStatus, number> {
  const summary: Record<TargetStatus, number> = { ok: 0, failed: 0, unreachable: 0, skipped: 0 };
  for (const o of outcomes) summary[o.status]++;
  return summary;
}

export function fleetDocument(run: FleetRun): FleetDocument {
  return {
    ok: run.ok,
    summary: countStatuses(run.outcomes),
    targets: run.outcomes.map((o) => ({ name: o.name, url: o.url, status: o.status, exit_code: o.exit_code, result: o.result })),
  };
}

function paint(style: ChalkInstance, status: TargetStatus | 'running'): string {
  switch (status) {
    case 'ok':
      return style.green(status);
    case 'failed':
      return style.red.bold(status);
    case 'unreachable':
      return style.red(status);
    default:
      return style.gray(status);
  }
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

export function totalLine(outcomes: readonly Pick<TargetOutcome, 'status'>[]): string {
  const s = countStatuses(outcomes);
  return `${outcomes.length} target${outcomes.length === 1 ? '' : 's'}: ${s.ok} ok, ${s.failed} failed, ${s.unreachable} unreachable, ${s.skipped} skipped`;
}

export function stopLine(reason: StopReason, command: string): string {
  switch (reason.kind) {
    case 'canary':
      return `canary ${reason.after} was not ok: nothing else started`;
    case 'stop':
      return `stopped after ${reason.after} was not ok (--on-error stop): no new target started; rerun \`tsm ${command}\` with the same targets to resume (targets already done do nothing)`;
    case 'interrupted':
      return `interrupted: no new target started; rerun \`tsm ${command}\` with the same targets to resume`;
  }
}

/** A row may also be a target still running (the report of an interrupted run). */
export type Row = Pick<TargetOutcome, 'name' | 'url' | 'exit_code' | 'summary'> & { status: TargetStatus | 'running' };

const HEAD = ['target', 'url', 'status', 'exit', 'summary'];

/**
 * The table; on a terminal of `width` columns the summary column wraps to fit (when the other
 * columns leave it at least 24), elsewhere (CI logs, files) every row stays one line.
 */
export function renderRows(rows: readonly Row[], style: ChalkInstance, width?: number): string {
  const cells = rows.map((r) => [r.name, r.url, r.status, r.exit_code === null ? '' : String(r.exit_code), r.summary]);
  let widths: number[] | undefined;
  if (width !== undefined && width > 0) {
    const natural = HEAD.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)) + 2);
    const borders = HEAD.length + 1;
    const total = natural.reduce((a, b) => a + b, 0) + borders;
    const room = width - (total - natural[4]!);
    if (total > width && room >= 24) widths = [...natural.slice(0, 4), room];
  }
  return renderTable(
    HEAD,
    cells.map((c, i) => [c[0]!, c[1]!, paint(style, rows[i]!.status), c[3]!, c[4]!]),
    widths,
    { compact: true },
  );
}

export function renderFleet(command: string, schema: string, run: FleetRun, style: ChalkInstance, width?: number): string {
  const out = [`tsm ${command}  ·  ${run.outcomes.length} target${run.outcomes.length === 1 ? '' : 's'}  ·  schema ${schema}`];
  out.push(renderRows(run.outcomes, style, width));
  if (run.stopped !== null) out.push(stopLine(run.stopped, command));
  const line = `${totalLine(run.outcomes)} (${seconds(run.ms)})`;
  out.push(run.ok ? style.green(line) : style.red(line));
  return out.join('\n');
}
