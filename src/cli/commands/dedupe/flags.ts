/** `tsm dedupe`: its flags, help texts and defaults, the only place they are written (--help, the parser and tsm demo read them). */
import type { KeepPolicy } from '../../../dedupe/engine.js';
import type { OptionSpecs } from '../../options.js';

export const KEEP_POLICIES: readonly KeepPolicy[] = ['newest', 'oldest'];
export const MAX_BATCH_SIZE = 100_000;

export const DEDUPE_OPTIONS = {
  dryRun: { flags: '--dry-run', description: 'list what would move; change nothing' },
  keep: { flags: '--keep <policy>', description: 'which row to keep per user_id', default: 'newest', choices: KEEP_POLICIES },
  batchSize: { flags: '--batch-size <n>', description: 'user ids per transaction', default: '500' },
} as const satisfies OptionSpecs;
