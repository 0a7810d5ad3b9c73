/**
 * The CLI: parse the command line, run the command, print its result, map errors to exit codes
 * (the one place that does). Nothing runs on import: bin/tsm.js calls main() and sets the exit code.
 */
import { CommanderError, type Command } from 'commander';
import type { GlobalOptions } from '../config.js';
import { EXIT, TsmError } from '../errors.js';
import { buildProgram, commandName, type Loader } from './program.js';

/** Where main() writes and how it ends the process on a signal (stand-ins in tests). */
export interface MainIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Ends the process at once (after a signal and the cleanups). */
  exit(code: number): void;
}

const PROCESS_IO: MainIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  exit: (code) => process.exit(code),
};

/** Exit code for an error that reached the top: typed errors carry theirs; anything else is 1. */
export function reportError(err: unknown, io: Pick<MainIo, 'stderr'> = PROCESS_IO): number {
  if (err instanceof TsmError) {
    io.stderr(`tsm: ${err.message.split('\n')[0]}\n`);
    return err.exitCode;
  }
  // Not one of ours: still one line (no stack) unless TSM_DEBUG is set.
  const message = err instanceof Error ? err.message : String(err);
  io.stderr(`tsm: unexpected error: ${message.split('\n')[0]}\n`);
  if (process.env.TSM_DEBUG && err instanceof Error && err.stack) io.stderr(err.stack + '\n');
  return EXIT.failed;
}

/**
 * The global options as the connection resolver wants them: `--connect-timeout` only when it was
 * given on the command line, so the URL's `connect_timeout` and PGCONNECT_TIMEOUT can apply.
 */
export function globalOptions(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<Record<string, unknown>>();
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  return {
    databaseUrl: str(o.databaseUrl),
    schema: str(o.schema),
    json: o.json === true,
    color: o.color !== false,
    connectTimeout: cmd.getOptionValueSourceWithGlobals('connectTimeout') === 'cli' ? str(o.connectTimeout) : undefined,
  };
}

/** Never settles: the cleanup stack is ending the process. */
const untilExit = (): Promise<never> => new Promise<never>(() => {});

export async function main(argv: string[], io: MainIo = PROCESS_IO): Promise<number> {
  let code: number = EXIT.ok;

  const execute = async (load: Loader, positional: (string | undefined)[], cmd: Command): Promise<void> => {
    const { installCleanups } = await import('./cleanup.js');
    const cleanups = installCleanups({ command: commandName(cmd), log: (line) => io.stderr(line + '\n'), exit: io.exit });
    try {
      // Loaded here, not on import: `tsm --version` and `--help` need neither chalk nor pg.
      const { makeContext } = await import('./context.js');
      const ctx = makeContext(globalOptions(cmd), { cleanups });
      const mod = await load();
      const result = await mod.run(ctx, { positional, options: cmd.optsWithGlobals() });
      // Stopped by a signal: the cleanup stack says what happened and exits 128 + n.
      if (cleanups.received()) return await untilExit();
      const out = ctx.json ? JSON.stringify(result.data, null, 2) : result.render(ctx.style);
      if (out !== '') io.stdout(out.endsWith('\n') ? out : out + '\n');
      code = result.exitCode;
    } catch (err) {
      if (cleanups.received()) return await untilExit();
      code = reportError(err, io);
    }
    // Something still registered (demo --keep: the server runs until Ctrl-C) keeps the handlers.
    if (cleanups.size() === 0) cleanups.dispose();
  };

  const program = buildProgram(execute);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; every other commander error (unknown option, missing argument) is usage.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return reportError(err, io);
  }
  return code;
}
