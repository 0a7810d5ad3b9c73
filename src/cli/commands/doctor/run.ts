/** `tsm doctor`: diagnose the telegram_sessions schema (or `--explain <id>` one check, no database needed). */
import { explain, type Explanation } from '../../../doctor/explain.js';
import { CHECK_IDS, exitCodeFor, findCheck, runDoctor, type DoctorReport } from '../../../doctor/index.js';
import { ConnectError, FailError, UsageError } from '../../../errors.js';
import { writeFileAtomic } from '../../atomic-file.js';
import type { CommandResult, Context } from '../../context.js';
import type { CommandArgs } from '../../options.js';
import { doctorMetrics } from './metrics.js';
import { doctorEnv, parseDoctorOptions } from './options.js';
import { renderExplanation, renderReport } from './render.js';

async function writeMetrics(path: string, content: string): Promise<void> {
  try {
    await writeFileAtomic(path, content);
  } catch (err) {
    throw new FailError(`--metrics-file: cannot write ${path}: ${(err as Error).message.split('\n')[0]}`, { code: 'metrics_file' });
  }
}

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<DoctorReport | Explanation>> {
  const started = performance.now();
  const o = parseDoctorOptions(args);
  const env = doctorEnv(ctx.schema, o);

  if (o.explain !== undefined) {
    const check = findCheck(o.explain);
    if (!check) throw new UsageError(`--explain: unknown check '${o.explain}'; valid ids: ${CHECK_IDS.join(', ')}`);
    const data = explain(check, env);
    return { exitCode: 0, data, render: (style) => renderExplanation(data, style, process.stdout.columns ?? 100) };
  }

  const database = ctx.connection().display;
  let report: DoctorReport;
  try {
    const client = await ctx.connect();
    try {
      report = await runDoctor(client, env, database);
    } finally {
      await client.end().catch(() => {});
    }
  } catch (err) {
    // Cannot connect (or lost the connection): the metrics still say so, the connection check failing.
    if (o.metricsPath !== undefined && err instanceof ConnectError) {
      const checks = CHECK_IDS.map((id) => ({ id, status: id === 'connection' ? ('fail' as const) : ('skipped' as const) }));
      await writeMetrics(o.metricsPath, doctorMetrics({ checks, finishedAt: Date.now(), durationSeconds: (performance.now() - started) / 1000 }));
    }
    throw err;
  }
  const exitCode = exitCodeFor(report.summary, o.failOn);
  const data: DoctorReport = { ...report, ok: exitCode === 0 };
  if (o.metricsPath !== undefined) {
    await writeMetrics(o.metricsPath, doctorMetrics({ checks: report.checks, finishedAt: Date.now(), durationSeconds: (performance.now() - started) / 1000 }));
  }
  return { exitCode, data, render: (style) => renderReport(data, style) };
}
