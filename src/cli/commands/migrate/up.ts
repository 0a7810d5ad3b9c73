/** tsm migrate up [N] [--dry-run]: apply pending migrations (src/migrate/run.ts), or print their SQL. */
import type { CommandArgs } from '../../options.js';
import type { CommandResult, Context } from '../../context.js';
import { EXIT } from '../../../errors.js';
import { planUp, type DryRunResult } from '../../../migrate/dry-run.js';
import { withInterrupt } from './interrupt.js';
import { migrateOptions } from './options.js';
import { renderDryRun, renderRun } from './render.js';
import { runMigrations, type RunResult } from '../../../migrate/run.js';

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<RunResult | DryRunResult>> {
  const o = migrateOptions(args);
  const database = ctx.connection().display;
  if (o.dryRun) {
    const plan = await planUp(ctx, { count: o.count, dir: o.dir, lockTimeoutMs: o.lockTimeoutMs, indexLockTimeoutMs: o.indexLockTimeoutMs, allowModified: o.allowModified });
    return { exitCode: EXIT.ok, data: plan, render: () => renderDryRun(plan, database, o) };
  }
  const result = await withInterrupt(ctx, () =>
    runMigrations(ctx, {
      direction: 'up',
      count: o.count,
      dir: o.dir,
      lockTimeoutMs: o.lockTimeoutMs,
      indexLockTimeoutMs: o.indexLockTimeoutMs,
      lockRetries: o.lockRetries,
      lockWaitMs: o.lockWaitMs,
      allowModified: o.allowModified,
    }),
  );
  return { exitCode: EXIT.ok, data: result, render: (style) => renderRun(result, style, database) };
}
