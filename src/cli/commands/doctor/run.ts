/** `tsm doctor`: diagnose the telegram_sessions schema (or `--explain <id>` one check, no database needed). */
import { explain, type Explanation } from '../../../doctor/explain.js';
import { CHECK_IDS, exitCodeFor, findCheck, runDoctor, type DoctorReport } from '../../../doctor/index.js';
import { ConnectError, FailError, UsageError } from '../../../errors.js';
import { writeFileAtomic } from '../../atomic-file.js';
import type { Client } from 'pg';
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

/**
 * Cancels `client`'s running statement from a second connection. Only a backend that is this
 * connection's own (the pid it announced at start-up, application_name tsm) is cancelled: through
 * a pooler the announced pid is the pooler's, matches no such backend, and nothing is cancelled
 * (the statement then ends at --data-timeout or the 5 s lock_timeout).
 */
async function cancelOwnQuery(ctx: Context, client: Client): Promise<string> {
  const pid = (client as unknown as { processID?: number | null }).processID;
  if (typeof pid !== 'number') return 'nothing to cancel';
  const other = await ctx.connect();
  try {
    const r = await other.query<{ cancelled: boolean }>(
      `SELECT pg_catalog.pg_cancel_backend(a.pid) AS cancelled FROM pg_catalog.pg_stat_activity a
        WHERE a.pid = $1 AND a.application_name = 'tsm' AND a.state = 'active'`,
      [pid],
    );
    return r.rows[0]?.cancelled ? 'its query was cancelled on the server' : 'no query of doctor was running';
  } finally {
    await other.end().catch(() => {});
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
    // Ctrl-C: cancel doctor's running statement (a long exact count, a wait for a lock) so it does
    // not run on, or hold its place in a lock queue, after doctor is gone.
    const stop = ctx.cleanups.push({ what: 'stopping doctor; cancelling its query', run: () => cancelOwnQuery(ctx, client) });
    try {
      report = await runDoctor(client, env, database);
    } finally {
      stop.release();
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
