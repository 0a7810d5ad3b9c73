import type { ChalkInstance } from 'chalk';
import type { Client } from 'pg';
import { resolveConnection, resolveSchema, type ConnectionSettings, type GlobalOptions } from './config.js';
import { connect } from './db/connect.js';
import { makeStyle } from './report/style.js';

/** What every command gets: resolved global options, a way to connect, a style, a logger. */
export interface Context {
  readonly json: boolean;
  readonly schema: string;
  readonly style: ChalkInstance;
  /** Resolved lazily: commands that need no database (demo, --explain) never fail on it. */
  connection(): ConnectionSettings;
  /** A connected client with application_name=tsm; throws ConnectError (exit 3). */
  connect(): Promise<Client>;
  /** Progress and logs: stderr, never stdout. */
  log(message: string): void;
}

export function makeContext(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Context {
  const schema = resolveSchema(opts.schema);
  let settings: ConnectionSettings | undefined;
  const connection = (): ConnectionSettings => (settings ??= resolveConnection(opts, env));
  return {
    json: opts.json === true,
    schema,
    style: makeStyle(opts.color !== false),
    connection,
    connect: () => connect(connection()),
    log: (message: string) => {
      process.stderr.write(message + '\n');
    },
  };
}

/** What a command returns: the exit code, the JSON document, and the human rendering. */
export interface CommandResult<T = unknown> {
  exitCode: number;
  data: T;
  render(style: ChalkInstance): string;
}
