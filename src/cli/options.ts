/**
 * What a command receives from the command line, and how a command declares its options: ONE
 * table per command (its `options.ts`) holding flags, help text and defaults. Commander's help
 * (src/cli/program.ts), the command's own parser and `tsm demo` all read that table, so a default
 * is written once. No side effects, no commander: commands and tests import this freely.
 */

/** One option of a command, as commander declares it. */
export interface OptionSpec {
  /** Commander's flags, e.g. `--lengths <list>` or `--keep`. */
  readonly flags: string;
  readonly description: string;
  /** The default as it would be typed on the command line; shown by --help. */
  readonly default?: string;
  /** The only accepted values (commander rejects anything else; the parser checks again). */
  readonly choices?: readonly string[];
}

/** A command's options, keyed by commander's attribute name (`--min-session-length` → `minSessionLength`). */
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** Option values as commander hands them over: strings, booleans, or absent. */
export type RawOptions = Readonly<Record<string, unknown>>;

/** What every command's run() receives. */
export interface CommandArgs {
  /** Positional arguments in order (undefined when an optional one was not given). */
  readonly positional: readonly (string | undefined)[];
  /** Global and command options together (commander's optsWithGlobals()). */
  readonly options: RawOptions;
}

/** The raw value of `key`, or its declared default when it was not given. */
export function optionValue(specs: OptionSpecs, raw: RawOptions, key: string): unknown {
  const v = raw[key];
  return v !== undefined ? v : specs[key]?.default;
}

/** The declared default of `key` (a programming error when it has none). */
export function defaultOf(specs: OptionSpecs, key: string): string {
  const d = specs[key]?.default;
  if (d === undefined) throw new Error(`option ${key} has no default`);
  return d;
}

/** Whether a flag without a value (`--keep`, `--dry-run`) was given. */
export function flag(raw: RawOptions, key: string): boolean {
  return raw[key] === true;
}

/** The global options (before or after the command name). */
export const GLOBAL_OPTIONS = {
  databaseUrl: { flags: '-d, --database-url <url>', description: 'PostgreSQL URL (else $DATABASE_URL, else libpq PG* variables)' },
  schema: { flags: '--schema <name>', description: 'schema holding telegram_sessions', default: 'public' },
  json: { flags: '--json', description: 'print exactly one JSON document on stdout' },
  connectTimeout: {
    flags: '--connect-timeout <seconds>',
    description: "connection timeout in seconds; when not given, the URL's connect_timeout or PGCONNECT_TIMEOUT apply before the default",
    default: '10',
  },
  color: { flags: '--no-color', description: 'no colours (NO_COLOR is honoured too)' },
} as const satisfies OptionSpecs;
