/** `tsm demo`: its typed options, parsed from the command line (flags.ts declares them). */
import { flag, type CommandArgs } from '../../options.js';

export interface DemoOptions {
  /** Leave the embedded server running (until Ctrl-C) and show its URL with the password. */
  keep: boolean;
}

export function parseDemoOptions(args: CommandArgs): DemoOptions {
  return { keep: flag(args.options, 'keep') };
}
