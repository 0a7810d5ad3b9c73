/** `tsm dedupe`: its typed options, parsed from the command line (defaults: flags.ts). */
import type { KeepPolicy } from '../../../dedupe/engine.js';
import { UsageError } from '../../../errors.js';
import { parseChoice, parseDuration, parseIntStrict } from '../../../parse.js';
import { flag, optionValue, type CommandArgs } from '../../options.js';
import { BATCH_TIME_RANGE, DEDUPE_OPTIONS, KEEP_POLICIES, MAX_BATCH_SIZE } from './flags.js';

export interface DedupeCommandOptions {
  keep: KeepPolicy;
  /** Fixed rows per batch, or undefined: sized by batchTimeMs. */
  batchSize: number | undefined;
  batchTimeMs: number;
  lockTimeoutMs: number;
  dryRun: boolean;
}

export function parseDedupeOptions(args: CommandArgs): DedupeCommandOptions {
  const o = args.options;
  const batchSizeRaw = optionValue(DEDUPE_OPTIONS, o, 'batchSize');
  const batchTimeMs = parseDuration('--batch-time', optionValue(DEDUPE_OPTIONS, o, 'batchTime'));
  if (batchTimeMs < BATCH_TIME_RANGE.min || batchTimeMs > BATCH_TIME_RANGE.max) {
    throw new UsageError(`--batch-time: ${batchTimeMs}ms is out of range (expected ${BATCH_TIME_RANGE.min}ms … ${BATCH_TIME_RANGE.max / 1000}s)`);
  }
  return {
    keep: parseChoice('--keep', optionValue(DEDUPE_OPTIONS, o, 'keep'), KEEP_POLICIES),
    batchSize: batchSizeRaw === undefined ? undefined : parseIntStrict('--batch-size', batchSizeRaw, 1, MAX_BATCH_SIZE),
    batchTimeMs,
    lockTimeoutMs: parseDuration('--lock-timeout', optionValue(DEDUPE_OPTIONS, o, 'lockTimeout')),
    dryRun: flag(o, 'dryRun'),
  };
}
