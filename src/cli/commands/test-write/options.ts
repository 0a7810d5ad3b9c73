/** `tsm test-write`: its typed options, parsed from the command line (defaults: flags.ts). */
import { UsageError } from '../../../errors.js';
import { parseChoice, parseIntStrict } from '../../../parse.js';
import { MAX_SESSION_LENGTH } from '../../../store/session-string.js';
import { VIAS, type Via } from '../../../store/via.js';
import { checkWritableTarget } from '../../atomic-file.js';
import { flag, optionValue, type CommandArgs } from '../../options.js';
import { MAX_CONCURRENCY, MAX_ROUNDS, TEST_WRITE_OPTIONS } from './flags.js';

export interface TestWriteCommandOptions {
  lengths: number[];
  concurrency: number;
  rounds: number;
  via: Via;
  keep: boolean;
  /** false with --no-prepare: unnamed statements from the start. */
  prepare: boolean;
  /** Absolute path of the Prometheus textfile (its folder checked to be writable), if any. */
  metricsPath: string | undefined;
}

/** `68,268,800` → [68, 268, 800]; each item a whole number 1 … 10,000,000. */
export function parseLengths(raw: unknown): number[] {
  const text = String(raw ?? '');
  return text.split(',').map((item, i) => {
    const t = item.trim();
    if (t === '') {
      throw new UsageError(`--lengths: item ${i + 1} of '${text}' is empty (expected comma-separated whole numbers 1 … 10,000,000, e.g. 68,268,800)`);
    }
    return parseIntStrict('--lengths', t, 1, MAX_SESSION_LENGTH);
  });
}

export function parseTestWriteOptions(args: CommandArgs): TestWriteCommandOptions {
  const o = args.options;
  const value = (key: keyof typeof TEST_WRITE_OPTIONS): unknown => optionValue(TEST_WRITE_OPTIONS, o, key);
  const metricsFile = value('metricsFile');
  return {
    lengths: parseLengths(value('lengths')),
    concurrency: parseIntStrict('--concurrency', value('concurrency'), 1, MAX_CONCURRENCY),
    rounds: parseIntStrict('--rounds', value('rounds'), 1, MAX_ROUNDS),
    via: parseChoice('--via', value('via'), VIAS),
    keep: flag(o, 'keep'),
    prepare: o.prepare !== false,
    metricsPath: typeof metricsFile === 'string' ? checkWritableTarget('--metrics-file', metricsFile) : undefined,
  };
}
