/**
 * Commander wiring only: every command, its options (read from the command's flags.ts, where
 * the defaults live) and the module that runs it. Command modules are loaded lazily, when their
 * command runs, which keeps `tsm --version` and `--help` fast (bench/startup): only commander and
 * the option tables (which import nothing at run time but src/store/via.ts) load before that.
 */
import { Command, Option, type OutputConfiguration } from 'commander';
import { BENCH_OPTIONS } from './commands/bench/flags.js';
import { DEDUPE_OPTIONS } from './commands/dedupe/flags.js';
import { DEMO_OPTIONS } from './commands/demo/flags.js';
import { DOCTOR_OPTIONS } from './commands/doctor/flags.js';
import { CREATE_OPTIONS, DOWN_OPTIONS, STATUS_OPTIONS, UP_OPTIONS } from './commands/migrate/flags.js';
import { TEST_WRITE_OPTIONS } from './commands/test-write/flags.js';
import type { CommandResult, Context } from './context.js';
import { fleetable } from './fleet/dispatch.js';
import { GLOBAL_OPTIONS, type CommandArgs, type OptionSpecs } from './options.js';

export const VERSION = '0.1.0';

/** A command module: `run(ctx, args) → result`. */
export interface CommandModule {
  run(ctx: Context, args: CommandArgs): Promise<CommandResult>;
}
export type Loader = () => Promise<CommandModule>;

/** Runs a command once commander has parsed its arguments. */
export type Execute = (load: Loader, positional: (string | undefined)[], cmd: Command) => Promise<void>;

function addOptions(cmd: Command, specs: OptionSpecs): Command {
  for (const spec of Object.values(specs)) {
    const option = new Option(spec.flags, spec.description);
    if (spec.default !== undefined) option.default(spec.default);
    if (spec.choices !== undefined) option.choices(spec.choices);
    cmd.addOption(option);
  }
  return cmd;
}

/**
 * The `tsm` program; `execute` runs the chosen command. `output` replaces commander's own writing
 * (src/cli/main.ts prints commander's errors as one `tsm: …` line, or the --json document); it is set
 * before the subcommands are made, which inherit it.
 */
export function buildProgram(execute: Execute, output?: OutputConfiguration): Command {
  const root = new Command('tsm');
  if (output) root.configureOutput(output);
  const program = addOptions(
    root
      .description('Diagnose, migrate and prove the PostgreSQL store of encrypted Telegram session strings.')
      .version(VERSION, '-V, --version')
      .exitOverride()
      .showHelpAfterError(false),
    GLOBAL_OPTIONS,
  );

  const act =
    (load: Loader, nPositional = 0) =>
    async (...args: unknown[]): Promise<void> => {
      const cmd = args[args.length - 1] as Command;
      const positional = args.slice(0, nPositional) as (string | undefined)[];
      await execute(load, positional, cmd);
    };

  addOptions(
    program.command('doctor').description('diagnose the telegram_sessions schema; exit 0 ok, 1 a check failed, 2 usage, 3 cannot connect'),
    DOCTOR_OPTIONS,
  ).action(act(fleetable('doctor', () => import('./commands/doctor/run.js'))));

  const migrate = program.command('migrate').description('versioned migrations of the telegram_sessions schema');
  addOptions(migrate.command('up [n]').description('apply pending migrations (all, or the next N)'), UP_OPTIONS).action(
    act(fleetable('migrate up', () => import('./commands/migrate/up.js')), 1),
  );
  addOptions(migrate.command('down [n]').description('revert the last N applied migrations (default 1)'), DOWN_OPTIONS).action(
    act(() => import('./commands/migrate/down.js'), 1),
  );
  addOptions(migrate.command('status').description('each migration: applied (when) / pending / modified / missing'), STATUS_OPTIONS).action(
    act(fleetable('migrate status', () => import('./commands/migrate/status.js'))),
  );
  addOptions(migrate.command('create <name>').description('create a new, empty TypeScript migration file'), CREATE_OPTIONS).action(
    act(() => import('./commands/migrate/create.js'), 1),
  );

  addOptions(
    program.command('test-write').description('length-stress and concurrency test of session writes; cleans up after itself'),
    TEST_WRITE_OPTIONS,
  ).action(act(fleetable('test-write', () => import('./commands/test-write/run.js'))));

  addOptions(
    program.command('dedupe').description('archive duplicate user_id rows (keeps one per user); nothing is deleted'),
    DEDUPE_OPTIONS,
  ).action(act(() => import('./commands/dedupe/run.js')));

  addOptions(program.command('bench').description('sustained upsert throughput and latency percentiles'), BENCH_OPTIONS).action(
    act(() => import('./commands/bench/run.js')),
  );

  addOptions(program.command('demo').description('the whole story on a throwaway embedded PostgreSQL (needs no database)'), DEMO_OPTIONS).action(
    act(() => import('./commands/demo/run.js')),
  );

  return program;
}

/**
 * The deepest command the words of `args` name ('migrate' for `tsm --json migrate`), without
 * parsing: for messages about a command line commander refused. Option values are skipped over
 * as words that name no command.
 */
export function commandFromArgs(program: Command, args: readonly string[]): Command {
  let cmd = program;
  for (const word of args) {
    if (word === '--') break;
    if (word.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (sub) cmd = sub;
  }
  return cmd;
}

/** The command as typed after `tsm` ('doctor', 'migrate up'), for messages. */
export function commandName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}
