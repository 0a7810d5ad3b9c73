/**
 * The CLI: parse the command line, run the command, print its result, map errors to exit codes
 * (the one place that does). Nothing runs on import: bin/tsm.js calls main() and sets the exit code.
 *
 * Every exit path ends here, so this is also where --json keeps its promise (design, "Output
 * rules"): exactly one JSON document on stdout, whatever happened — the command's result, its
 * error (typed errors carry `code` and `data`), commander's own usage errors (with `--json`
 * anywhere on the command line), help and version, and a stop by SIGINT/SIGTERM/SIGHUP (the cleanup
 * stack's notes). Without --json: the result on stdout, one `tsm: …` line on stderr for an error.
 */
import { CommanderError, type Command } from 'commander';
import type { GlobalOptions } from '../config.js';
import { EXIT, TsmError } from '../errors.js';
import type { Context } from './context.js';
import { buildProgram, commandFromArgs, commandName, VERSION, type Loader } from './program.js';

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

/**
 * Prints the one `tsm: …` line of an error that reached the top and returns its exit code (typed
 * errors carry theirs; src/cli/error-document.ts describes the rest). No stack unless TSM_DEBUG is set.
 */
export function reportError(err: unknown, describe: (err: unknown) => { message: string; exitCode: number }, io: Pick<MainIo, 'stderr'> = PROCESS_IO): number {
  const d = describe(err);
  io.stderr(`tsm: ${d.message}\n`);
  if (process.env.TSM_DEBUG && !(err instanceof TsmError) && err instanceof Error && err.stack) io.stderr(err.stack + '\n');
  return d.exitCode;
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

/**
 * Whether `--json` is on the command line (before a `--`): what decides the output of a command
 * line commander refuses to parse. Once parsed, commander's own reading of --json decides.
 */
export function jsonRequested(args: readonly string[]): boolean {
  for (const word of args) {
    if (word === '--') return false;
    if (word === '--json') return true;
  }
  return false;
}

/** commander's message as one line, without its `error: ` prefix. */
function commanderMessage(err: CommanderError): string {
  return err.message
    .replace(/^error: /, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

/** What an error document says besides the error: the command and, when it was resolved, the target. */
function knownOf(command: string, ctx: Context | undefined): Record<string, unknown> {
  const known: Record<string, unknown> = { command };
  if (ctx === undefined) return known;
  try {
    known.database = ctx.connection().display; // masked
  } catch {
    // no database configured, or a bad URL: the error says so
  }
  known.schema = ctx.schema;
  return known;
}

/** Never settles: the cleanup stack is ending the process. */
const untilExit = (): Promise<never> => new Promise<never>(() => {});

export async function main(argv: string[], io: MainIo = PROCESS_IO): Promise<number> {
  const args = argv.slice(2);
  let code: number = EXIT.ok;
  // Until commander has parsed the command line, only the words say whether --json was asked for.
  let json = jsonRequested(args);
  let printed = false;
  /** The one JSON document: a second one (a signal after the result, demo --keep) is not printed. */
  const printJson = (doc: unknown): void => {
    if (printed) return;
    printed = true;
    io.stdout(JSON.stringify(doc, null, 2) + '\n');
  };

  const execute = async (load: Loader, positional: (string | undefined)[], cmd: Command): Promise<void> => {
    const name = commandName(cmd);
    const options = globalOptions(cmd);
    json = options.json === true;
    let ctx: Context | undefined;
    const { installCleanups } = await import('./cleanup.js');
    const { describeError, errorDocument, interruptedDocument, resultDocument } = await import('./error-document.js');
    const cleanups = installCleanups({
      command: name,
      log: (line) => io.stderr(line + '\n'),
      exit: (exitCode, stop) => {
        if (json && stop) printJson(interruptedDocument(name, stop, knownOf(name, ctx)));
        io.exit(exitCode);
      },
    });
    try {
      // Loaded here, not on import: `tsm --version` and `--help` need neither chalk nor pg.
      const { makeContext } = await import('./context.js');
      ctx = makeContext(options, { cleanups });
      const mod = await load();
      const result = await mod.run(ctx, { positional, options: cmd.optsWithGlobals() });
      // Stopped by a signal: the cleanup stack says what happened and exits 128 + n.
      if (cleanups.received()) return await untilExit();
      code = result.exitCode;
      if (json) {
        printJson(resultDocument(result.data, result.exitCode));
      } else {
        const out = result.render(ctx.style);
        if (out !== '') io.stdout(out.endsWith('\n') ? out : out + '\n');
      }
    } catch (err) {
      if (cleanups.received()) return await untilExit();
      code = reportError(err, describeError, io);
      if (json) printJson(errorDocument(err, knownOf(name, ctx)));
    }
    // Something still registered (demo --keep: the server runs until Ctrl-C) keeps the handlers.
    if (cleanups.size() === 0) cleanups.dispose();
  };

  // commander's own output: help and version as usual (inside the document with --json); its
  // errors are not printed by commander but below, as one `tsm: …` line (and the document).
  let helpText = '';
  const program = buildProgram(execute, {
    writeOut: (text) => (json ? void (helpText += text) : io.stdout(text)),
    writeErr: (text) => (json ? void (helpText += text) : io.stderr(text)),
    outputError: () => {},
  });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    // Loaded here, not on import (test/import-graph: before a command runs, only commander and the option tables).
    const { describeError, errorDocument, usageDocument } = await import('./error-document.js');
    if (!(err instanceof CommanderError)) {
      code = reportError(err, describeError, io);
      if (json) printJson(errorDocument(err));
      return code;
    }
    const target = commandFromArgs(program, args);
    if (err.exitCode === 0) {
      // --help, --version, `tsm help …`
      if (json) printJson(err.code === 'commander.version' ? { ok: true, version: VERSION } : { ok: true, help: helpText });
      return EXIT.ok;
    }
    // A command that needs a subcommand got none (commander printed its help on stderr), or a bad command line.
    const message =
      err.code === 'commander.help'
        ? `missing command: tsm ${commandName(target) || ''}`.trimEnd() +
          ` needs one of ${target.commands.map((c) => c.name()).join(', ')} (see tsm ${[commandName(target), '--help'].filter(Boolean).join(' ')})`
        : commanderMessage(err);
    io.stderr(`tsm: ${message}\n`);
    if (json) printJson(usageDocument(message, target === program ? {} : { command: commandName(target) }));
    return EXIT.usage;
  }
  return code;
}
