/**
 * Ctrl-C and kill for commands that leave rows behind unless they clean up (test-write, bench).
 * The first SIGINT/SIGTERM aborts `signal` (no new writes, no more retries) and lets the command
 * finish its cleanup; the command then throws `interrupted()` (exit 128 + signal number).
 * If the cleanup has not finished after `graceMs`, or on a second signal, `emergency()` runs
 * (cancel our queries, delete our rows on a fresh connection) and the process exits.
 */
import { constants } from 'node:os';
import { TsmError } from '../errors.js';

export interface InterruptGuard {
  readonly signal: AbortSignal;
  /** The signal received, or null. */
  received(): NodeJS.Signals | null;
  /** Throws the interruption error when a signal arrived. */
  check(): void;
  /** The error to throw once cleanup is done (exit 130 for SIGINT, 143 for SIGTERM). */
  interrupted(what: string): TsmError;
  dispose(): void;
}

export function exitCodeFor(sig: NodeJS.Signals): number {
  return 128 + (constants.signals[sig as keyof typeof constants.signals] ?? 2);
}

export class Interrupted extends TsmError {}

export function guardInterrupts(opts: {
  name: string;
  log: (line: string) => void;
  emergency: () => Promise<void>;
  graceMs?: number;
}): InterruptGuard {
  const controller = new AbortController();
  let got: NodeJS.Signals | null = null;
  let timer: NodeJS.Timeout | undefined;
  let exiting = false;

  const emergencyExit = (sig: NodeJS.Signals): void => {
    if (exiting) return;
    exiting = true;
    // Inside another command that handles signals itself (tsm demo), leave the exit to it.
    const othersExit = process.listenerCount(sig) > 1;
    // The emergency cleanup gets 5 s; a lock it cannot get must not keep the process alive.
    const limit = new Promise<void>((resolve) => setTimeout(resolve, 5000).unref());
    Promise.race([opts.emergency().catch(() => {}), limit])
      .finally(() => {
        if (!othersExit) process.exit(exitCodeFor(sig));
      });
  };

  const onSignal = (sig: NodeJS.Signals): void => {
    if (got !== null) {
      opts.log(`tsm ${opts.name}: ${sig} again: removing the test rows and exiting now`);
      emergencyExit(got);
      return;
    }
    got = sig;
    opts.log(`tsm ${opts.name}: ${sig}: stopping; removing the test rows`);
    controller.abort();
    timer = setTimeout(() => {
      opts.log(`tsm ${opts.name}: cleanup is taking too long: cancelling our queries`);
      emergencyExit(sig);
    }, opts.graceMs ?? 10_000);
    timer.unref();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  for (const s of signals) process.on(s, onSignal);

  return {
    signal: controller.signal,
    received: () => got,
    check() {
      if (got !== null) throw new Interrupted(`${opts.name} interrupted by ${got}`, exitCodeFor(got));
    },
    interrupted(what) {
      return new Interrupted(`${opts.name} interrupted by ${got}: ${what}`, exitCodeFor(got ?? 'SIGINT'));
    },
    dispose() {
      if (timer) clearTimeout(timer);
      for (const s of signals) process.removeListener(s, onSignal);
    },
  };
}
