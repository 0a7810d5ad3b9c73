/** `tsm demo`: its options (the only place they are written) and their parser. */
import { flag, type CommandArgs, type OptionSpecs } from '../../options.js';

export const DEMO_OPTIONS = {
  keep: { flags: '--keep', description: 'leave the embedded server running and print its URL' },
} as const satisfies OptionSpecs;

export interface DemoOptions {
  /** Leave the embedded server running (until Ctrl-C) and show its URL with the password. */
  keep: boolean;
}

export function parseDemoOptions(args: CommandArgs): DemoOptions {
  return { keep: flag(args.options, 'keep') };
}
