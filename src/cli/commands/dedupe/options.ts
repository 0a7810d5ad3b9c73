/** `tsm dedupe`: its options, their defaults (the only place they are written) and their parser. */
import type { KeepPolicy } from '../../../dedupe/engine.js';
import { parseChoice, parseIntStrict } from '../../../parse.js';
import { flag, optionValue, type CommandArgs, type OptionSpecs } from '../../options.js';

export const KEEP_POLICIES: readonly KeepPolicy[] = ['newest', 'oldest'];
export const MAX_BATCH_SIZE = 100_000;

export const DEDUPE_OPTIONS = {
  dryRun: { flags: '--dry-run', description: 'list what would move; change nothing' },
  keep: { flags: '--keep <policy>', description: 'which row to keep per user_id', default: 'newest', choices: KEEP_POLICIES },
  batchSize: { flags: '--batch-size <n>', description: 'user ids per transaction', default: '500' },
} as const satisfies OptionSpecs;

export interface DedupeCommandOptions {
  keep: KeepPolicy;
  batchSize: number;
  dryRun: boolean;
}

export function parseDedupeOptions(args: CommandArgs): DedupeCommandOptions {
  const o = args.options;
  return {
    keep: parseChoice('--keep', optionValue(DEDUPE_OPTIONS, o, 'keep'), KEEP_POLICIES),
    batchSize: parseIntStrict('--batch-size', optionValue(DEDUPE_OPTIONS, o, 'batchSize'), 1, MAX_BATCH_SIZE),
    dryRun: flag(o, 'dryRun'),
  };
}
