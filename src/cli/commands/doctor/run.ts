/** `tsm doctor`: diagnose the telegram_sessions schema (or `--explain <id>` one check, no database needed). */
import { explain, type Explanation } from '../../../doctor/explain.js';
import { CHECK_IDS, exitCodeFor, findCheck, runDoctor, type DoctorReport } from '../../../doctor/index.js';
import { UsageError } from '../../../errors.js';
import type { CommandResult, Context } from '../../context.js';
import type { CommandArgs } from '../../options.js';
import { doctorEnv, parseDoctorOptions } from './options.js';
import { renderExplanation, renderReport } from './render.js';

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<DoctorReport | Explanation>> {
  const o = parseDoctorOptions(args);
  const env = doctorEnv(ctx.schema, o);

  if (o.explain !== undefined) {
    const check = findCheck(o.explain);
    if (!check) throw new UsageError(`--explain: unknown check '${o.explain}'; valid ids: ${CHECK_IDS.join(', ')}`);
    const data = explain(check, env);
    return { exitCode: 0, data, render: (style) => renderExplanation(data, style, process.stdout.columns ?? 100) };
  }

  const database = ctx.connection().display;
  const client = await ctx.connect();
  try {
    const report = await runDoctor(client, env, database);
    return { exitCode: exitCodeFor(report.summary, o.failOn), data: report, render: (style) => renderReport(report, style) };
  } finally {
    await client.end().catch(() => {});
  }
}
