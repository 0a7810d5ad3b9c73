/** The migrate commands' options, validated (UsageError, exit 2, on anything malformed). */
import { UsageError } from '../errors.js';
import { parseDuration, parseIntStrict } from '../parse.js';

export interface MigrateOptions {
  count: number | undefined;
  lockTimeoutMs: number;
  lockWaitMs: number;
  dir: string | undefined;
  dryRun: boolean;
  allowModified: boolean;
}

/** The parsed command line, as the CLI hands it over (no import of the CLI: the engine stays below it). */
export interface MigrateArgs {
  positional: (string | undefined)[];
  options: Record<string, unknown>;
}

export function migrateOptions(args: MigrateArgs): MigrateOptions {
  const o = args.options;
  const raw = args.positional[0];
  const dir = o.migrationsDir;
  if (dir !== undefined && (typeof dir !== 'string' || dir.trim() === '')) throw new UsageError('--migrations-dir: expected a folder');
  return {
    count: raw === undefined ? undefined : parseIntStrict('N', raw, 1, 100_000),
    lockTimeoutMs: parseDuration('--lock-timeout', o.lockTimeout ?? '5s'),
    lockWaitMs: parseDuration('--lock-wait', o.lockWait ?? '60s'),
    dir: dir as string | undefined,
    dryRun: o.dryRun === true,
    allowModified: o.allowModified === true,
  };
}
