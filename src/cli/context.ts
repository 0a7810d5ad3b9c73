/** The command context: what every command's run() gets besides its arguments. */
import type { ChalkInstance } from 'chalk';
import type { Client } from 'pg';
import { resolveConnection, resolveSchema, type ConnectionSettings, type GlobalOptions } from '../config.js';
import { connect } from '../db/connect.js';
import { makeStyle } from '../report/style.js';
import { detachedCleanups, type Cleanups } from './cleanup.js';

export interface Context {
  readonly json: boolean;
  readonly schema: string;
  /** Whether colour was allowed (--no-color not given); `style` also depends on the terminal. */
  readonly color: boolean;
  readonly style: ChalkInstance;
  /** Aborted on the first Ctrl-C (SIGINT) or SIGTERM: stop starting work, stop retrying. */
  readonly signal: AbortSignal;
  /** The cleanup stack a command registers with (src/cli/cleanup.ts). */
  readonly cleanups: Cleanups;
  /** Resolved lazily: commands that need no database (demo, --explain) never fail on it. */
  connection(): ConnectionSettings;
  /** A connected client with application_name=tsm; throws ConnectError (exit 3). */
  connect(): Promise<Client>;
  /** Progress and logs: stderr, never stdout. */
  log(message: string): void;
  /** stderr is a terminal this command may draw a live progress line on (not under tsm demo, which draws its own). */
  readonly interactive: boolean;
  /** Set when the command runs as one target of a fleet (--targets): the fleet reports each target itself. */
  readonly fleetTarget?: string;
}

export interface ContextOptions {
  env?: NodeJS.ProcessEnv;
  /** Default: cleanups that nothing signals (a command run outside main()). */
  cleanups?: Cleanups;
  log?: (message: string) => void;
  fleetTarget?: string;
}

export function makeContext(opts: GlobalOptions, o: ContextOptions = {}): Context {
  const env = o.env ?? process.env;
  const schema = resolveSchema(opts.schema);
  let settings: ConnectionSettings | undefined;
  const connection = (): ConnectionSettings => (settings ??= resolveConnection(opts, env));
  const cleanups = o.cleanups ?? detachedCleanups();
  const color = opts.color !== false;
  return {
    ...(o.fleetTarget !== undefined ? { fleetTarget: o.fleetTarget } : {}),
    json: opts.json === true,
    schema,
    color,
    style: makeStyle(color),
    signal: cleanups.signal,
    cleanups,
    connection,
    connect: () => connect(connection()),
    interactive: o.log === undefined && process.stderr.isTTY === true,
    log:
      o.log ??
      ((message: string) => {
        process.stderr.write(message + '\n');
      }),
  };
}

/** What a command returns: the exit code, the JSON document, and the human rendering. */
export interface CommandResult<T = unknown> {
  exitCode: number;
  data: T;
  render(style: ChalkInstance): string;
}
