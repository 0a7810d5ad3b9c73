/** `tsm demo`: its flags and help texts, the only place they are written. */
import type { OptionSpecs } from '../../options.js';

export const DEMO_OPTIONS = {
  keep: { flags: '--keep', description: 'leave the embedded server running and print its URL' },
} as const satisfies OptionSpecs;
