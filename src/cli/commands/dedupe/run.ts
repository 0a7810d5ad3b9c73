/**
 * `tsm dedupe`: resolves duplicate user_id rows (which block the unique index) by moving every row
 * but the kept one per user_id into telegram_sessions_duplicates_archive. Nothing is deleted.
 * Exit 0 when no duplicate remains (and every moved row checks out), 1 otherwise, 2 usage, 3 connect.
 *
 * Ctrl-C: the run stops after the batch in flight (each batch is one transaction) or cancels the
 * scan in flight (on a direct connection), and the last line says how many rows were moved.
 */
import { dedupe, type DedupeProgress, type DedupeReport } from '../../../dedupe/engine.js';
import { stopReason } from '../../../dedupe/session.js';
import { ARCHIVE, TABLE } from '../../../dedupe/shape.js';
import { EXIT, FailError, TsmError } from '../../../errors.js';
import { tsmCommand } from '../../../report/shell.js';
import type { CommandResult, Context } from '../../context.js';
import type { CommandArgs } from '../../options.js';
import { parseDedupeOptions } from './options.js';
import { dedupeProgressLine } from './progress.js';
import { renderDedupe } from './render.js';

const rowsWord = (n: number): string => `${n.toLocaleString('en-US')} row${n === 1 ? '' : 's'}`;

/** What the database holds after a stop, in words (never "rows moved before this" when none were). */
function stateAfterStop(moved: number, dryRun: boolean, schema: string, when = 'before this'): string {
  if (dryRun) return 'nothing was changed';
  if (moved === 0) return `nothing was moved; once that is fixed, run ${tsmCommand(schema, 'dedupe')} again`;
  return `${rowsWord(moved)} moved ${when} are in ${ARCHIVE}; each batch is one transaction, so no row is half-moved; run ${tsmCommand(schema, 'dedupe')} again`;
}

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<DedupeReport>> {
  const o = parseDedupeOptions(args);
  const client = await ctx.connect();
  const line = dedupeProgressLine(process.stderr, TABLE, ctx.interactive);
  let last: DedupeProgress | null = null;
  const running = dedupe(client, {
    schema: ctx.schema,
    keep: o.keep,
    dryRun: o.dryRun,
    batchTargetMs: o.batchTimeMs,
    lockTimeoutMs: o.lockTimeoutMs,
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    signal: ctx.signal,
    onProgress: (p) => {
      last = p;
      line.update(p);
    },
    // On a terminal above the progress line; without one nothing (the report says it all at the end).
    log: (l) => line.log(l),
  });
  const settled = running.then(
    () => undefined,
    () => undefined,
  );
  const stop = ctx.cleanups.push({
    what: 'stopping after the batch in flight (each batch is one transaction)',
    run: async () => {
      const p = last as DedupeProgress | null;
      // A scan can run for minutes on a big table: cancel it (only on a direct connection, where the pid is ours alone).
      if (p && p.phase !== 'moving' && p.backendPid !== null) {
        const c = await ctx.connect().catch(() => null);
        await c?.query('SELECT pg_catalog.pg_cancel_backend($1)', [p.backendPid]).catch(() => {});
        await c?.end().catch(() => {});
      }
      await settled;
      line.done();
      const moved = (last as DedupeProgress | null)?.moved ?? 0;
      if (o.dryRun) return 'nothing was changed';
      if (moved === 0) return `nothing was moved; run ${tsmCommand(ctx.schema, 'dedupe')} to start again`;
      return stateAfterStop(moved, false, ctx.schema, 'before the stop');
    },
    emergencyWhat: 'closing the connection (the server rolls back the batch in flight)',
    emergency: async () => {
      await client.end().catch(() => {});
    },
  });
  try {
    const report = await running;
    return {
      exitCode: report.ok ? EXIT.ok : EXIT.failed,
      data: report,
      render: (style) => renderDedupe(report, style),
    };
  } catch (err) {
    if (err instanceof TsmError) throw err;
    const why = stopReason(err);
    const moved = (last as DedupeProgress | null)?.moved ?? 0;
    throw new FailError(`dedupe stopped: ${why.code}${why.sqlstate ? ` (${why.sqlstate})` : ''}: ${why.message}; ${stateAfterStop(moved, o.dryRun, ctx.schema)}`, {
      code: why.code,
      data: { archived: o.dryRun ? 0 : moved },
      cause: err,
    });
  } finally {
    line.done();
    stop.release();
    await client.end().catch(() => {});
  }
}
