/** `tsm bench`: its typed options, parsed from the command line (defaults: flags.ts). */
import { UsageError } from '../../../errors.js';
import { parseChoice, parseDuration, parseIntStrict } from '../../../parse.js';
import { MAX_SESSION_LENGTH } from '../../../store/session-string.js';
import { VIAS, type Via } from '../../../store/via.js';
import { optionValue, type CommandArgs } from '../../options.js';
import { BENCH_OPTIONS } from './flags.js';

export interface BenchCommandOptions {
  clients: number;
  durationMs: number;
  warmupMs: number;
  users: number;
  length: number;
  via: Via;
  /** false with --no-prepare: unnamed statements from the start. */
  prepare: boolean;
}

/** `10` (seconds), or a duration with a unit: `500ms`, `30s`, `2m`. At most one hour. */
export function parseBenchDuration(raw: unknown): number {
  const text = String(raw ?? '').trim();
  const ms = /^\d+$/.test(text) ? parseIntStrict('--duration', text, 1, 3600) * 1000 : parseDuration('--duration', text);
  if (ms < 100 || ms > 3_600_000) throw new UsageError(`--duration: '${text}' is out of range (100ms … 1 hour)`);
  return ms;
}

/** `1s` (default), `500ms`, `0`: at most 10 minutes. */
export function parseWarmup(raw: unknown): number {
  const text = String(raw ?? '').trim();
  if (text === '0') return 0;
  const ms = /^\d+$/.test(text) ? parseIntStrict('--warmup', text, 0, 600) * 1000 : parseDuration('--warmup', text);
  if (ms > 600_000) throw new UsageError(`--warmup: '${text}' is out of range (0 … 10 minutes)`);
  return ms;
}

export function parseBenchOptions(args: CommandArgs): BenchCommandOptions {
  const value = (key: keyof typeof BENCH_OPTIONS): unknown => optionValue(BENCH_OPTIONS, args.options, key);
  return {
    clients: parseIntStrict('--clients', value('clients'), 1, 256),
    durationMs: parseBenchDuration(value('duration')),
    warmupMs: parseWarmup(value('warmup')),
    users: parseIntStrict('--users', value('users'), 1, 1_000_000),
    length: parseIntStrict('--length', value('length'), 1, MAX_SESSION_LENGTH),
    via: parseChoice('--via', value('via'), VIAS),
    prepare: args.options.prepare !== false,
  };
}
