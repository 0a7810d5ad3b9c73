import { UsageError } from './errors.js';

/** A whole number in [min, max]; rejects `1e9`, `1.5`, `0x10`, blanks. */
export function parseIntStrict(flag: string, raw: unknown, min: number, max: number): number {
  const text = String(raw ?? '').trim();
  if (!/^-?\d+$/.test(text)) {
    throw new UsageError(`${flag}: '${text}' is not a whole number (expected ${min} … ${max})`);
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag}: ${text} is out of range (expected ${min} … ${max})`);
  }
  return n;
}

/** Durations like `200ms`, `5s`, `2m`; a bare number is milliseconds. Returns milliseconds. */
export function parseDuration(flag: string, raw: unknown): number {
  const text = String(raw ?? '').trim();
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|min)?$/.exec(text);
  if (!m) throw new UsageError(`${flag}: '${text}' is not a duration (examples: 200ms, 5s, 1m)`);
  const value = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const ms = unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000;
  if (!Number.isFinite(ms) || ms < 1 || ms > 24 * 3600_000) {
    throw new UsageError(`${flag}: '${text}' is out of range (1ms … 24h)`);
  }
  return Math.round(ms);
}

/** One of a fixed set of words. */
export function parseChoice<T extends string>(flag: string, raw: unknown, choices: readonly T[]): T {
  const text = String(raw ?? '');
  if (!(choices as readonly string[]).includes(text)) {
    throw new UsageError(`${flag}: '${text}' is not one of ${choices.join(', ')}`);
  }
  return text as T;
}
