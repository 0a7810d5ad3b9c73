import type { CommandArgs } from '../cli.js';
import type { CommandResult, Context } from '../context.js';
import { FailError } from '../errors.js';

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult> {
  void ctx;
  void args;
  throw new FailError('not implemented yet');
}
