/** tsm migrate status: every migration applied (when) / pending / modified / missing; exit 1 unless all applied. */
import type { CommandArgs } from '../../options.js';
import type { CommandResult, Context } from '../../context.js';
import { EXIT } from '../../../errors.js';
import { resolveDir } from '../../../migrate/files.js';
import { migrationsDirOption } from './options.js';
import { renderStatus, type StatusView } from './render.js';
import { migrationStatus } from '../../../migrate/status.js';

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<StatusView>> {
  const dir = resolveDir(migrationsDirOption(args.options.migrationsDir));
  const database = ctx.connection().display;
  const client = await ctx.connect();
  let view: StatusView;
  try {
    const s = await migrationStatus(client, ctx.schema, dir);
    const summary = { applied: 0, pending: 0, modified: 0, missing: 0 };
    for (const m of s.migrations) summary[m.state]++;
    view = {
      schema: ctx.schema,
      table: s.table,
      migrations_dir: dir,
      migrations: s.migrations,
      summary,
      // Anything but applied means this database and these files disagree.
      up_to_date: summary.pending + summary.modified + summary.missing === 0,
    };
  } finally {
    await client.end().catch(() => {});
  }
  return { exitCode: view.up_to_date ? EXIT.ok : EXIT.failed, data: view, render: (style) => renderStatus(view, style, database) };
}
