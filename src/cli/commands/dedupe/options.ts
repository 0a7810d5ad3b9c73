/** `tsm dedupe`: its typed options, parsed from the command line (defaults: flags.ts). */
import type { KeepPolicy } from '../../../dedupe/engine.js';
import { parseChoice, parseIntStrict } from '../../../parse.js';
import { flag, optionValue, type CommandArgs } from '../../options.js';
import { DEDUPE_OPTIONS, KEEP_POLICIES, MAX_BATCH_SIZE } from './flags.js';

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
