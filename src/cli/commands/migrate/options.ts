/** The migrate commands' options, validated (UsageError, exit 2, on anything malformed). */
import { UsageError } from '../../../errors.js';
import { parseDuration, parseIntStrict } from '../../../parse.js';
import { optionValue, type CommandArgs } from '../../options.js';
import { LOCK_OPTIONS } from './flags.js';

export interface MigrateOptions {
  count: number | undefined;
  lockTimeoutMs: number;
  indexLockTimeoutMs: number;
  lockRetries: number;
  lockWaitMs: number;
  dir: string | undefined;
  dryRun: boolean;
  allowModified: boolean;
}

/** `--migrations-dir`, when given: a non-blank string. */
export function migrationsDirOption(dir: unknown): string | undefined {
  if (dir !== undefined && (typeof dir !== 'string' || dir.trim() === '')) throw new UsageError('--migrations-dir: expected a folder');
  return dir;
}

export function migrateOptions(args: CommandArgs): MigrateOptions {
  const o = args.options;
  const raw = args.positional[0];
  const dir = migrationsDirOption(o.migrationsDir);
  return {
    count: raw === undefined ? undefined : parseIntStrict('N', raw, 1, 100_000),
    lockTimeoutMs: parseDuration('--lock-timeout', optionValue(LOCK_OPTIONS, o, 'lockTimeout')),
    indexLockTimeoutMs: parseDuration('--index-lock-timeout', optionValue(LOCK_OPTIONS, o, 'indexLockTimeout')),
    lockRetries: parseIntStrict('--lock-retries', optionValue(LOCK_OPTIONS, o, 'lockRetries'), 0, 100),
    lockWaitMs: parseDuration('--lock-wait', optionValue(LOCK_OPTIONS, o, 'lockWait')),
    dir,
    dryRun: o.dryRun === true,
    allowModified: o.allowModified === true,
  };
}
