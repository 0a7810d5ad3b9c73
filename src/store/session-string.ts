/**
 * Session strings for tests and benchmarks: exactly `length` characters of the base64 alphabet,
 * like a real encrypted Telethon StringSession. They are never printed or logged: only their
 * length and, where useful, a short hash (`shortHash`).
 */
import { createHash, randomBytes } from 'node:crypto';

export const MAX_SESSION_LENGTH = 10_000_000;

/** `length` random characters from A–Z a–z 0–9 + / (no padding). */
export function makeSessionString(length: number): string {
  if (!Number.isSafeInteger(length) || length < 1) throw new RangeError(`session length must be a positive integer, got ${length}`);
  // 3 bytes → 4 characters; a multiple of 3 bytes never produces '=' padding.
  return randomBytes(3 * Math.ceil(length / 4))
    .toString('base64')
    .slice(0, length);
}

/** Another string of the same length, guaranteed to differ from `other` (even at length 1). */
export function makeDifferentSessionString(other: string): string {
  let s = makeSessionString(other.length);
  if (s === other) {
    // Only plausible for very short strings: flip the first character within the alphabet.
    s = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
  }
  return s;
}

/** The first 12 hex digits of the SHA-256: enough to tell two strings apart, useless to recover one. */
export function shortHash(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 12);
}
