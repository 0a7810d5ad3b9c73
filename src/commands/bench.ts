/**
 * `tsm bench`: sustained upsert throughput and latency percentiles through SessionStore, with N
 * clients. Exit 0 when every call succeeded, 1 when some failed, 2 usage, 3 cannot connect.
 */
import type { ChalkInstance } from 'chalk';
import type { CommandArgs } from '../cli.js';
import type { CommandResult, Context } from '../context.js';
import { EXIT, UsageError } from '../errors.js';
import { parseChoice, parseDuration, parseIntStrict } from '../parse.js';
import { paintStatus } from '../report/style.js';
import { runBench, type BenchReport } from '../sessions/bench.js';
import { remedyFor } from '../sessions/remedy.js';
import { MAX_SESSION_LENGTH } from '../sessions/session-string.js';
import { VIAS } from '../sessions/sql.js';

/** `10` (seconds), or a duration with a unit: `500ms`, `30s`, `2m`. At most one hour. */
export function parseBenchDuration(raw: unknown): number {
  const text = String(raw ?? '').trim();
  const ms = /^\d+$/.test(text) ? parseIntStrict('--duration', text, 1, 3600) * 1000 : parseDuration('--duration', text);
  if (ms < 100 || ms > 3_600_000) throw new UsageError(`--duration: '${text}' is out of range (100ms … 1 hour)`);
  return ms;
}

const fmt = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: 1 });

function render(r: BenchReport, style: ChalkInstance): string {
  const errs = Object.entries(r.errors);
  const out = [
    style.bold(`tsm bench: ${r.database}, schema ${r.schema}, via ${r.via}`),
    `${r.clients} client${r.clients === 1 ? '' : 's'} × ${fmt(r.duration_s)} s, upserts over ${fmt(r.users)} user ids, ${fmt(r.length)}-character sessions`,
    '',
    `calls:      ${fmt(r.calls)} (${errs.length === 0 ? '0 errors' : errs.map(([c, n]) => `${style.red(c)} × ${fmt(n)}`).join(', ')})`,
    `throughput: ${fmt(r.calls_per_second)} calls/s`,
    `latency:    p50 ${r.latency_ms.p50} ms, p95 ${r.latency_ms.p95} ms, p99 ${r.latency_ms.p99} ms, max ${r.latency_ms.max} ms`,
    `client CPU: ${r.client_cpu_us_per_call} µs per call (this process, user + system)`,
    `bench rows removed (${fmt(r.rows_removed ?? 0)})`,
  ];
  for (const [code] of errs) out.push(`${style.red(code)}: remedy: ${remedyFor(code, r.schema)}`);
  out.push(r.ok ? `${paintStatus(style, 'ok')}: every call succeeded` : `${style.red.bold('failing')}: some calls failed`);
  return out.join('\n');
}

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<BenchReport>> {
  const o = args.options;
  const clients = parseIntStrict('--clients', o.clients ?? '4', 1, 256);
  const durationMs = parseBenchDuration(o.duration ?? '10');
  const users = parseIntStrict('--users', o.users ?? '10000', 1, 1_000_000);
  const length = parseIntStrict('--length', o.length ?? '800', 1, MAX_SESSION_LENGTH);
  const via = parseChoice('--via', o.via ?? 'function', VIAS);
  const report = await runBench({ settings: ctx.connection(), schema: ctx.schema, clients, durationMs, users, length, via, log: (l) => ctx.log(l) });
  return { exitCode: report.ok ? EXIT.ok : EXIT.failed, data: report, render: (style) => render(report, style) };
}
