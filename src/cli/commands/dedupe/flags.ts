/** `tsm dedupe`: its flags, help texts and defaults, the only place they are written (--help, the parser and tsm demo read them). */
import type { KeepPolicy } from '../../../dedupe/engine.js';
import type { OptionSpecs } from '../../options.js';

export const KEEP_POLICIES: readonly KeepPolicy[] = ['newest', 'oldest'];
export const MAX_BATCH_SIZE = 100_000;
/** --batch-time bounds (ms): a batch holds its row locks about this long. */
export const BATCH_TIME_RANGE = { min: 5, max: 10_000 } as const;

export const DEDUPE_OPTIONS = {
  dryRun: { flags: '--dry-run', description: 'list what would move; change nothing (works on a read-only standby)' },
  keep: { flags: '--keep <policy>', description: 'which row to keep per user_id', default: 'newest', choices: KEEP_POLICIES },
  batchTime: {
    flags: '--batch-time <duration>',
    description: 'how long one batch transaction should take; its row locks are held that long (batches are sized to it)',
    default: '50ms',
  },
  batchSize: { flags: '--batch-size <n>', description: 'a fixed number of rows to move per transaction instead of sizing batches by --batch-time' },
  lockTimeout: {
    flags: '--lock-timeout <duration>',
    description: 'how long a batch waits for its table lock (held by a migration, say) before it is retried',
    default: '5s',
  },
} as const satisfies OptionSpecs;
