/** The migrate commands' flags, help texts and defaults: the only place they are written (--help, the parser and tsm demo read them). */
import type { OptionSpecs } from '../../options.js';
import { fleetOptions } from '../../fleet/flags.js';

const migrationsDir = { flags: '--migrations-dir <path>', description: 'folder of migrations (default: the ones shipped with tsm)' };

/**
 * `migrate up` and `migrate down`. The lock defaults were chosen by measurement (bench/lock-queue,
 * docs/migrate.md "Lock queue"): an ALTER TABLE waiting for its lock makes every later writer wait
 * behind it for as long as it waits, so it waits at most 500 ms per attempt; 12 retries with
 * pauses of 0.5 s doubling to 5 s keep trying for about 54 s. Concurrent index statements never
 * make writers wait, so they wait longer (2 min), once.
 */
export const LOCK_OPTIONS = {
  lockTimeout: {
    flags: '--lock-timeout <duration>',
    description: 'lock_timeout of each attempt: the longest any application write waits behind a migration',
    default: '500ms',
  },
  indexLockTimeout: {
    flags: '--index-lock-timeout <duration>',
    description: 'lock_timeout of CREATE/DROP INDEX CONCURRENTLY: they never make writers wait, and a build that times out is lost',
    default: '2min',
  },
  lockRetries: {
    flags: '--lock-retries <n>',
    description: 'retries of a migration that did not get its lock (pauses of 0.5 s doubling to 5 s)',
    default: '12',
  },
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
