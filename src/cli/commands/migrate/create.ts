/** tsm migrate create <name>: a new, empty TypeScript migration file (src/migrate/create.ts). */
import { optionValue, type CommandArgs } from '../../options.js';
import type { CommandResult, Context } from '../../context.js';
import { EXIT } from '../../../errors.js';
import { createMigration, type Created } from '../../../migrate/create.js';
import { CREATE_OPTIONS } from './flags.js';
import { migrationsDirOption } from './options.js';

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<Created>> {
  void ctx;
  const created = await createMigration(args.positional[0], migrationsDirOption(args.options.migrationsDir));
  return {
    exitCode: EXIT.ok,
    data: created,
    render: (style) => {
      const lines = [`${style.green('created')}  ${created.path}`];
      if (!created.has_shipped) {
        lines.push(
          `note: this folder does not hold tsm's own migrations; \`tsm migrate up --migrations-dir ${String(optionValue(CREATE_OPTIONS, args.options, 'migrationsDir'))}\` applies only the files in it, ` +
            "so copy tsm's dist/migrations/*.js there first (their checksums then match what tsm applied)",
        );
      }
      return lines.join('\n');
    },
  };
}
