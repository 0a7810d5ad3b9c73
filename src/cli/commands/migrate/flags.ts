/** The migrate commands' flags, help texts and defaults: the only place they are written (--help, the parser and tsm demo read them). */
import type { OptionSpecs } from '../../options.js';
import { fleetOptions } from '../../fleet/flags.js';

const migrationsDir = { flags: '--migrations-dir <path>', description: 'folder of migrations (default: the ones shipped with tsm)' };

/** `migrate up` and `migrate down`. */
export const LOCK_OPTIONS = {
  lockTimeout: { flags: '--lock-timeout <duration>', description: 'lock_timeout for each DDL statement (retried with backoff)', default: '5s' },
  lockWait: { flags: '--lock-wait <duration>', description: "how long to wait for another tsm migrate's lock", default: '60s' },
  migrationsDir,
} as const satisfies OptionSpecs;

export const UP_OPTIONS = {
  dryRun: { flags: '--dry-run', description: 'print the SQL that would run; change nothing' },
  allowModified: { flags: '--allow-modified', description: 'run even when an applied migration file has changed since' },
  ...LOCK_OPTIONS,
  ...fleetOptions('stop'),
} as const satisfies OptionSpecs;

export const DOWN_OPTIONS = LOCK_OPTIONS;

export const STATUS_OPTIONS = { migrationsDir, ...fleetOptions('continue') } as const satisfies OptionSpecs;

export const CREATE_OPTIONS = {
  migrationsDir: { flags: '--migrations-dir <path>', description: 'folder to create it in', default: 'migrations' },
} as const satisfies OptionSpecs;
