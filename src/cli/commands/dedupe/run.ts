/**
 * `tsm dedupe`: resolves duplicate user_id rows (which block the unique index) by moving every row
 * but the kept one per user_id into telegram_sessions_duplicates_archive. Nothing is deleted.
 * Exit 0 when no duplicate remains (and every moved row checks out), 1 otherwise, 2 usage, 3 connect.
 */
import { classifyError } from '../../../db/classify.js';
import { dedupe, type DedupeReport } from '../../../dedupe/engine.js';
import { ARCHIVE } from '../../../dedupe/shape.js';
import { EXIT, FailError, TsmError } from '../../../errors.js';
import { tsmCommand } from '../../../report/shell.js';
import type { CommandResult, Context } from '../../context.js';
import type { CommandArgs } from '../../options.js';
import { parseDedupeOptions } from './options.js';
import { renderDedupe } from './render.js';

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<DedupeReport>> {
  const { keep, batchSize, dryRun } = parseDedupeOptions(args);

  const client = await ctx.connect();
  try {
    const report = await dedupe(client, { schema: ctx.schema, keep, batchSize, dryRun, signal: ctx.signal, log: (l) => ctx.log(l) });
    return {
      exitCode: report.ok ? EXIT.ok : EXIT.failed,
      data: report,
      render: (style) => renderDedupe(report, style),
    };
  } catch (err) {
    if (err instanceof TsmError) throw err;
    const c = classifyError(err);
    const safe = dryRun
      ? 'nothing was changed'
      : `rows moved before this are in ${ARCHIVE}; each batch is one transaction, so no row is half-moved; run ${tsmCommand(ctx.schema, 'dedupe')} again`;
    throw new FailError(`dedupe stopped: ${c.code}${c.sqlstate ? ` (${c.sqlstate})` : ''}: ${c.message.split('\n')[0]}; ${safe}`);
  } finally {
    await client.end().catch(() => {});
  }
}
