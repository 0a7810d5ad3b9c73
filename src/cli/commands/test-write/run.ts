/**
 * `tsm test-write`: proves that real-sized sessions are saved, alone and under a race, through the
 * same SessionStore applications use. Exit 0 all passed, 1 a write failed, 2 usage, 3 cannot
 * connect (130/143 when interrupted, after removing the test rows).
 */
import { EXIT } from '../../../errors.js';
import type { CommandResult, Context } from '../../context.js';
import type { CommandArgs } from '../../options.js';
import { runTestWrite, type TestWriteReport } from './engine.js';
import { parseTestWriteOptions } from './options.js';
import { problemsOf, renderTestWrite } from './render.js';
import { remedyFor } from '../../remedy.js';

/** The --json document (the shape). */
export interface TestWriteJson {
  database: string;
  via: string;
  prepared_statements: boolean;
  results: { length: number; insert: string; update: string; readback: string; ms: number; ok: boolean; code?: string; sqlstate?: string | null; detail?: string }[];
  race: { concurrency: number; rounds: number; calls: number; errors: Record<string, number>; rows_left: number; ok: boolean };
  /** One example (SQLSTATE and message) per race error code: no failure without its message. */
  race_details: Record<string, { sqlstate: string | null; message: string }>;
  /** What to do about each failing code (the same text as the human output). */
  remedies: Record<string, string>;
  server_timeouts: TestWriteReport['server_timeouts'];
  ok: boolean;
}

export function toJson(r: TestWriteReport): TestWriteJson {
  return {
    database: r.database,
    via: r.via,
    prepared_statements: r.prepared_statements,
    results: r.results.map((x) => ({
      length: x.length,
      insert: x.insert,
      update: x.update,
      readback: x.readback,
      ms: x.ms,
      ok: x.ok,
      ...(x.code !== undefined ? { code: x.code } : {}),
      ...(x.sqlstate !== undefined ? { sqlstate: x.sqlstate } : {}),
      ...(x.detail !== undefined ? { detail: x.detail } : {}),
    })),
    race: { ...r.race },
    race_details: r.race_details,
    remedies: Object.fromEntries([...problemsOf(r)].map(([code, p]) => [code, remedyFor(code, r.schema, p.sqlstate, r.server_timeouts)])),
    server_timeouts: r.server_timeouts,
    ok: r.ok,
  };
}

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<TestWriteJson>> {
  const o = parseTestWriteOptions(args);
  const settings = ctx.connection(); // exit 2 when no database is configured

  const report = await runTestWrite({
    settings,
    schema: ctx.schema,
    lengths: o.lengths,
    concurrency: o.concurrency,
    rounds: o.rounds,
    via: o.via,
    keep: o.keep,
    prepare: o.prepare,
    ...(o.metricsPath ? { metricsPath: o.metricsPath } : {}),
    cleanups: ctx.cleanups,
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
