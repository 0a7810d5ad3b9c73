/** tsm migrate down [N]: revert the last N applied migrations (default 1), refusing to lose data. */
import type { CommandArgs } from '../../options.js';
import type { CommandResult, Context } from '../../context.js';
import { EXIT } from '../../../errors.js';
import { withInterrupt } from './interrupt.js';
import { migrateOptions } from './options.js';
import { renderRun } from './render.js';
import { runMigrations, type RunResult } from '../../../migrate/run.js';

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<RunResult>> {
  const o = migrateOptions(args);
  const database = ctx.connection().display;
  const result = await withInterrupt(ctx, () =>
    runMigrations(ctx, {
      direction: 'down',
      count: o.count ?? 1,
      dir: o.dir,
      lockTimeoutMs: o.lockTimeoutMs,
      indexLockTimeoutMs: o.indexLockTimeoutMs,
      lockRetries: o.lockRetries,
      lockWaitMs: o.lockWaitMs,
      allowModified: false,
    }),
  );
  return { exitCode: EXIT.ok, data: result, render: (style) => renderRun(result, style, database) };
}
