/** `tsm doctor`: diagnose the telegram_sessions schema (or `--explain <id>` one check, no database needed). */
import type { CommandArgs } from '../cli.js';
import type { CommandResult, Context } from '../context.js';
import { explain, renderExplanation } from '../doctor/explain.js';
import { CHECK_IDS, exitCodeFor, findCheck, runDoctor } from '../doctor/index.js';
import { renderReport } from '../doctor/render.js';
import type { DoctorEnv } from '../doctor/types.js';
import { UsageError } from '../errors.js';
import { parseChoice, parseIntStrict } from '../parse.js';

/** PostgreSQL's largest varchar(n). */
const MAX_VARCHAR = 10_485_760;

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult> {
  const o = args.options;
  const env: DoctorEnv = {
    schema: ctx.schema,
    minSessionLength: parseIntStrict('--min-session-length', o.minSessionLength ?? '4096', 1, MAX_VARCHAR),
  };
  const failOn = parseChoice('--fail-on', o.failOn ?? 'fail', ['fail', 'warn'] as const);

  if (o.explain !== undefined) {
    const id = String(o.explain);
    const check = findCheck(id);
    if (!check) throw new UsageError(`--explain: unknown check '${id}'; valid ids: ${CHECK_IDS.join(', ')}`);
    const data = explain(check, env);
    return { exitCode: 0, data, render: (style) => renderExplanation(data, style, process.stdout.columns ?? 100) };
  }

  const database = ctx.connection().display;
  const client = await ctx.connect();
  try {
    const report = await runDoctor(client, env, database);
    return { exitCode: exitCodeFor(report.summary, failOn), data: report, render: (style) => renderReport(report, style) };
  } finally {
    await client.end().catch(() => {});
  }
}
