/**
 * `tsm bench`: sustained upsert throughput and latency percentiles through SessionStore, with N
 * clients. Exit 0 when every call succeeded, 1 when some failed, 2 usage, 3 cannot connect.
 */
import type { ChalkInstance } from 'chalk';
import { EXIT } from '../../../errors.js';
import { paintStatus } from '../../../report/style.js';
import type { CommandResult, Context } from '../../context.js';
import type { CommandArgs } from '../../options.js';
import { remedyFor, timeoutNote } from '../../remedy.js';
import { runBench, type BenchReport } from './engine.js';
import { parseBenchOptions } from './options.js';

const fmt = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: 1 });

function render(r: BenchReport, style: ChalkInstance): string {
  const errs = Object.entries(r.errors);
  const out = [
    style.bold(`tsm bench: ${r.database}, schema ${r.schema}, via ${r.via}${r.prepared_statements ? '' : ', unnamed statements'}`),
    `${r.clients} client${r.clients === 1 ? '' : 's'} × ${fmt(r.duration_s)} s${r.warmup_s > 0 ? ` (after ${fmt(r.warmup_s)} s of warm-up)` : ''}, upserts over ${fmt(r.users)} user ids, ${fmt(r.length)}-character sessions`,
    '',
    `calls:      ${fmt(r.calls)} (${errs.length === 0 ? '0 errors' : errs.map(([c, n]) => `${style.red(c)} × ${fmt(n)}`).join(', ')})`,
    `throughput: ${fmt(r.calls_per_second)} calls/s`,
    `latency:    p50 ${r.latency_ms.p50} ms, p95 ${r.latency_ms.p95} ms, p99 ${r.latency_ms.p99} ms, max ${r.latency_ms.max} ms`,
    `client CPU: ${r.client_cpu_us_per_call} µs per call (this process, user + system)`,
    `bench rows removed (${fmt(r.rows_removed ?? 0)})`,
  ];
  for (const [code] of errs) {
    const d = r.error_details[code];
    const sqlstate = d?.sqlstate ?? null;
    out.push(
      `${style.red(code)}: ${sqlstate ? `${sqlstate}: ` : ''}${d?.message ?? ''}${timeoutNote(code, sqlstate, r.server_timeouts)}`,
      `  remedy: ${remedyFor(code, r.schema, sqlstate, r.server_timeouts)}`,
    );
  }
  out.push(r.ok ? `${paintStatus(style, 'ok')}: every call succeeded` : `${style.red.bold('failing')}: some calls failed`);
  return out.join('\n');
}

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<BenchReport>> {
  const o = parseBenchOptions(args);
  const report = await runBench({ settings: ctx.connection(), schema: ctx.schema, ...o, cleanups: ctx.cleanups, log: (l) => ctx.log(l) });
  return { exitCode: report.ok ? EXIT.ok : EXIT.failed, data: report, render: (style) => render(report, style) };
}
