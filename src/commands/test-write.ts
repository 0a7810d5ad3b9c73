/**
 * `tsm test-write`: proves that real-sized sessions are saved, alone and under a race, through the
 * same SessionStore applications use. Exit 0 all passed, 1 a write failed, 2 usage, 3 cannot
 * connect (130/143 when interrupted, after removing the test rows).
 */
import type { CommandArgs } from '../cli.js';
import type { CommandResult, Context } from '../context.js';
import { EXIT, UsageError } from '../errors.js';
import { parseChoice, parseIntStrict } from '../parse.js';
import { checkWritableTarget } from '../sessions/atomic-file.js';
import { renderTestWrite } from '../sessions/render.js';
import { MAX_SESSION_LENGTH } from '../sessions/session-string.js';
import { VIAS } from '../sessions/sql.js';
import { runTestWrite, type TestWriteReport } from '../sessions/test-write.js';

/** The --json document (the shape). */
export interface TestWriteJson {
  database: string;
  via: string;
  results: { length: number; insert: string; update: string; readback: string; ms: number; ok: boolean; code?: string }[];
  race: { concurrency: number; rounds: number; calls: number; errors: Record<string, number>; rows_left: number; ok: boolean };
  ok: boolean;
}

export const MAX_CONCURRENCY = 256;
export const MAX_ROUNDS = 100_000;

/** `68,268,800` → [68, 268, 800]; each item a whole number 1 … 10,000,000. */
export function parseLengths(raw: unknown): number[] {
  const text = String(raw ?? '');
  return text.split(',').map((item, i) => {
    const t = item.trim();
    if (t === '') {
      throw new UsageError(`--lengths: item ${i + 1} of '${text}' is empty (expected comma-separated whole numbers 1 … 10,000,000, e.g. 68,268,800)`);
    }
    return parseIntStrict('--lengths', t, 1, MAX_SESSION_LENGTH);
  });
}

export function toJson(r: TestWriteReport): TestWriteJson {
  return {
    database: r.database,
    via: r.via,
    results: r.results.map((x) => ({
      length: x.length,
      insert: x.insert,
      update: x.update,
      readback: x.readback,
      ms: x.ms,
      ok: x.ok,
      ...(x.code !== undefined ? { code: x.code } : {}),
    })),
    race: { ...r.race },
    ok: r.ok,
  };
}

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<TestWriteJson>> {
  const o = args.options;
  const lengths = parseLengths(o.lengths ?? '68,268,800');
  const concurrency = parseIntStrict('--concurrency', o.concurrency ?? '8', 1, MAX_CONCURRENCY);
  const rounds = parseIntStrict('--rounds', o.rounds ?? '20', 1, MAX_ROUNDS);
  const via = parseChoice('--via', o.via ?? 'function', VIAS);
  const metricsPath = typeof o.metricsFile === 'string' ? checkWritableTarget('--metrics-file', o.metricsFile) : undefined;
  const settings = ctx.connection(); // exit 2 when no database is configured

  const report = await runTestWrite({
    settings,
    schema: ctx.schema,
    lengths,
    concurrency,
    rounds,
    via,
    keep: o.keep === true,
    ...(metricsPath ? { metricsPath } : {}),
    log: (line) => ctx.log(line),
  });
  if (ctx.json && report.rows.kept) {
    ctx.log(`tsm test-write: kept the test rows (user ids ${report.rows.prefix}*); remove them with: ${report.rows.delete_sql}`);
  }
  return {
    exitCode: report.ok ? EXIT.ok : EXIT.failed,
    data: toJson(report),
    render: (style) => renderTestWrite(report, style),
  };
}
