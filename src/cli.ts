/**
 * Commander wiring only: options → command module → exit code. Every command module is loaded
 * lazily (keeps `tsm --version` fast) and exports `run(ctx, args) → CommandResult`.
 */
import { Command, CommanderError, Option } from 'commander';
import { EXIT, TsmError } from './errors.js';
import type { CommandResult, Context } from './context.js';

export interface CommandArgs {
  positional: (string | undefined)[];
  options: Record<string, unknown>;
}

type Loader = () => Promise<{ run(ctx: Context, args: CommandArgs): Promise<CommandResult> }>;

const VERSION = '0.1.0';

async function execute(load: Loader, positional: (string | undefined)[], cmd: Command): Promise<void> {
  const options = cmd.optsWithGlobals();
  let code: number;
  try {
    const { makeContext } = await import('./context.js');
    const ctx = makeContext(options);
    const mod = await load();
    const result = await mod.run(ctx, { positional, options });
    const out = ctx.json ? JSON.stringify(result.data, null, 2) : result.render(ctx.style);
    if (out !== '') process.stdout.write(out.endsWith('\n') ? out : out + '\n');
    code = result.exitCode;
  } catch (err) {
    code = reportError(err);
  }
  process.exitCode = code;
}

function reportError(err: unknown): number {
  if (err instanceof TsmError) {
    process.stderr.write(`tsm: ${err.message.split('\n')[0]}\n`);
    return err.exitCode;
  }
  // Not one of ours: still one line (no stack) unless TSM_DEBUG is set.
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`tsm: unexpected error: ${message.split('\n')[0]}\n`);
  if (process.env.TSM_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
  return EXIT.failed;
}

function build(): Command {
  const program = new Command('tsm')
    .description('Diagnose, migrate and prove the PostgreSQL store of encrypted Telegram session strings.')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError(false)
    .option('-d, --database-url <url>', 'PostgreSQL URL (else $DATABASE_URL, else libpq PG* variables)')
    .option('--schema <name>', 'schema holding telegram_sessions', 'public')
    .option('--json', 'print exactly one JSON document on stdout')
    .option('--connect-timeout <seconds>', "connection timeout in seconds (default: the URL's connect_timeout, else PGCONNECT_TIMEOUT, else 10)")
    .option('--no-color', 'no colours (NO_COLOR is honoured too)');

  const act =
    (load: Loader, nPositional = 0) =>
    async (...args: unknown[]): Promise<void> => {
      const cmd = args[args.length - 1] as Command;
      const positional = args.slice(0, nPositional) as (string | undefined)[];
      await execute(load, positional, cmd);
    };

  program
    .command('doctor')
    .description('diagnose the telegram_sessions schema; exit 0 ok, 1 a check failed, 2 usage, 3 cannot connect')
    .option('--explain <check-id>', 'what a check looks at, why it matters, and its SQL')
    .option('--min-session-length <n>', 'smallest acceptable varchar(n) for session columns', '4096')
    .addOption(new Option('--fail-on <level>', 'exit 1 on failures only, or on warnings too').choices(['fail', 'warn']).default('fail'))
    .action(act(() => import('./commands/doctor.js')));

  const migrate = program.command('migrate').description('versioned migrations of the telegram_sessions schema');
  const lockOpts = (c: Command): Command =>
    c
      .option('--lock-timeout <duration>', 'lock_timeout for each DDL statement (retried with backoff)', '5s')
      .option('--lock-wait <duration>', "how long to wait for another tsm migrate's lock", '60s')
      .option('--migrations-dir <path>', 'folder of migrations (default: the ones shipped with tsm)');
  lockOpts(
    migrate
      .command('up [n]')
      .description('apply pending migrations (all, or the next N)')
      .option('--dry-run', 'print the SQL that would run; change nothing')
      .option('--allow-modified', 'run even when an applied migration file has changed since'),
  ).action(act(() => import('./commands/migrate-up.js'), 1));
  lockOpts(migrate.command('down [n]').description('revert the last N applied migrations (default 1)')).action(
    act(() => import('./commands/migrate-down.js'), 1),
  );
  migrate
    .command('status')
    .description('each migration: applied (when) / pending / modified / missing')
    .option('--migrations-dir <path>', 'folder of migrations (default: the ones shipped with tsm)')
    .action(act(() => import('./commands/migrate-status.js')));
  migrate
    .command('create <name>')
    .description('create a new, empty TypeScript migration file')
    .option('--migrations-dir <path>', 'folder to create it in', 'migrations')
    .action(act(() => import('./commands/migrate-create.js'), 1));

  program
    .command('test-write')
    .description('length-stress and concurrency test of session writes; cleans up after itself')
    .option('--lengths <list>', 'comma-separated session lengths (1 … 10,000,000)', '68,268,800')
    .option('--concurrency <n>', 'connections racing on one user id (1 … 256)', '8')
    .option('--rounds <n>', 'race rounds', '20')
    .addOption(new Option('--via <path>', 'write through the function or the INSERT … ON CONFLICT statement').choices(['function', 'statement']).default('function'))
    .option('--keep', 'keep the test rows')
    .option('--metrics-file <file>', 'write Prometheus metrics (textfile-collector format)')
    .action(act(() => import('./commands/test-write.js')));

  program
    .command('dedupe')
    .description('archive duplicate user_id rows (keeps one per user); nothing is deleted')
    .option('--dry-run', 'list what would move; change nothing')
    .addOption(new Option('--keep <policy>', 'which row to keep per user_id').choices(['newest', 'oldest']).default('newest'))
    .option('--batch-size <n>', 'user ids per transaction', '500')
    .action(act(() => import('./commands/dedupe.js')));

  program
    .command('bench')
    .description('sustained upsert throughput and latency percentiles')
    .option('--clients <n>', 'concurrent clients', '4')
    .option('--duration <seconds>', 'how long to run', '10')
    .option('--users <n>', 'distinct user ids to spread upserts over', '10000')
    .option('--length <n>', 'session string length', '800')
    .addOption(new Option('--via <path>', 'function or statement').choices(['function', 'statement']).default('function'))
    .action(act(() => import('./commands/bench.js')));

  program
    .command('demo')
    .description('the whole story on a throwaway embedded PostgreSQL (needs no database)')
    .option('--keep', 'leave the embedded server running and print its URL')
    .action(act(() => import('./commands/demo.js')));

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = build();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; every other commander error (unknown option, missing argument) is usage.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return reportError(err);
  }
  return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
}

process.exitCode = await main(process.argv);
