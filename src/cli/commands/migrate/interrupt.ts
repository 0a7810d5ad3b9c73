/**
 * Ctrl-C during `migrate up` / `down`: the engine (src/migrate) gets `ctx.signal`, cancels its
 * running statement on the server and throws an `interrupted` error saying what it stopped, what
 * is left and what the next command does. That text is the note of the final line the cleanup
 * stack prints (`tsm: migrate up interrupted by SIGINT: …`, exit 130).
 */
import { TsmError } from '../../../errors.js';
import type { Context } from '../../context.js';

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The engine's own account of an interruption, or a short line for anything else. */
export function interruptionNote(outcome: Outcome<unknown>): string {
  if (outcome.ok) return 'the run had finished';
  const err = outcome.error;
  if (err instanceof TsmError && err.code === 'interrupted') return err.message;
  const first = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
  return `stopped: ${first}`;
}

/** Runs `work` (which gets ctx.signal through ctx) with its cleanup entry on the stack while it runs. */
export async function withInterrupt<T>(ctx: Context, work: () => Promise<T>): Promise<T> {
  const outcome: Promise<Outcome<T>> = work().then(
    (value): Outcome<T> => ({ ok: true, value }),
    (error: unknown): Outcome<T> => ({ ok: false, error }),
  );
  const handle = ctx.cleanups.push({
    what: 'cancelling the running migration statement on the server',
    // As a fleet target, the fleet reports this target's state on its own line (and sums the
    // targets up in the final one): the note would repeat it there, without the target's name.
    run: async () => {
      const note = interruptionNote(await outcome);
      return ctx.fleetTarget === undefined ? note : undefined;
    },
  });
  const o = await outcome;
  handle.release();
  if (!o.ok) throw o.error;
  return o.value;
}
