/**
 * THE signal/cleanup module of the CLI: the only place that listens for SIGINT, SIGTERM and
 * SIGHUP, and the only place (besides the final exit code in bin/tsm.js) that ends the process.
 *
 * A command registers what must happen when it is stopped (remove its test rows, stop the
 * embedded server, …) on one stack. The command's own path runs the same cleanup when it is done
 * (`handle.run()`, once: the signal path and the normal path share one promise).
 *
 * First signal: `signal` is aborted (engines stop starting work and stop retrying), the stack
 * runs from the top (the last registered first: in `tsm demo`, test-write's rows go before
 * the server that holds them), the final line `tsm: <command> interrupted by <sig>: <notes>` is
 * written, and the process exits 128 + the signal number (130, 143).
 * A second signal, or a stack that is still running after the grace time, runs the emergency path:
 * each entry's `emergency()` (cancel our statements, delete our rows on a fresh connection),
 * bounded in time, then the same exit.
 *
 * The library's engines never see this module: they receive `signal` (an AbortSignal) and return
 * results. Command-only engines (test-write's, bench's) register their cleanup on it.
 */
import { constants } from 'node:os';

/** Ctrl-C, a kill, and a closed terminal. */
export const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof SIGNALS)[number];

/** 128 + the signal number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP (what a shell reports for a killed job). */
export function exitCodeForSignal(sig: NodeJS.Signals): number {
  return 128 + (constants.signals[sig as keyof typeof constants.signals] ?? 2);
}

export interface CleanupEntry {
  /** What the first signal says is happening, e.g. 'stopping; removing the test rows'. */
  readonly what: string;
  /** The cleanup. Its note ('test rows removed') ends up in the final line. */
  run(): Promise<string | void>;
  /** The last resort (after the grace time, or on a second signal). Must be quick; it is bounded anyway. */
  emergency?(): Promise<string | void>;
  /** Logged when the emergency path starts, e.g. 'cancelling our queries'. */
  readonly emergencyWhat?: string;
}

export interface CleanupHandle {
  /** Runs the cleanup (once, whoever asks first) and takes it off the stack. */
  run(): Promise<string | undefined>;
  /** Takes it off the stack without running it (the command keeps what it made, e.g. `--keep`). */
  release(): void;
}

/** What a command sees. */
export interface Cleanups {
  /** Aborted at the first SIGINT/SIGTERM/SIGHUP. */
  readonly signal: AbortSignal;
  /** The signal received, or null. */
  received(): NodeJS.Signals | null;
  push(entry: CleanupEntry): CleanupHandle;
}

/** The process-like thing signals come from (the real `process`, or a stand-in in tests). */
export interface SignalSource {
  on(event: StopSignal, listener: (sig: NodeJS.Signals) => void): unknown;
  removeListener(event: StopSignal, listener: (sig: NodeJS.Signals) => void): unknown;
}

export interface InstallOptions {
  /** The command as typed after `tsm` (for messages). */
  command: string;
  /** stderr lines. */
  log(line: string): void;
  /** Ends the process (the real one: process.exit); `stop` says which signal and what the cleanups said (for --json). */
  exit(code: number, stop?: { signal: NodeJS.Signals; notes: string[] }): void;
  source?: SignalSource;
  /** How long the stack may run after the first signal before the emergency path (default 10 s). */
  graceMs?: number;
  /** How long the emergency path may run (default 5 s). */
  emergencyMs?: number;
}

export interface InstalledCleanups extends Cleanups {
  /** Entries still registered. */
  size(): number;
  /** Removes the signal listeners (the command is done and nothing is left registered). */
  dispose(): void;
}

interface Slot {
  entry: CleanupEntry;
  run(): Promise<string | undefined>;
}

const noteOf = (v: string | void): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';


export function installCleanups(o: InstallOptions): InstalledCleanups {
  const source: SignalSource = o.source ?? process;
  const graceMs = o.graceMs ?? 10_000;
  const emergencyMs = o.emergencyMs ?? 5000;
  const controller = new AbortController();
  const stack: Slot[] = [];
  let got: NodeJS.Signals | null = null;
  let emergencyStarted = false;
  let exited = false;
  // The timers of the signal path are not unref'd on purpose: they keep the process alive until
  // the exit they lead to, whatever else the command is (not) waiting for. finish() clears them.
  const timers = new Set<NodeJS.Timeout>();
  const after = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const finish = (sig: NodeJS.Signals, notes: (string | undefined)[]): void => {
    if (exited) return;
    exited = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const said = notes.filter((n): n is string => n !== undefined);
    o.log(`tsm: ${o.command} interrupted by ${sig}${said.length > 0 ? `: ${said.join('; ')}` : ''}`);
    o.exit(exitCodeForSignal(sig), { signal: sig, notes: said });
  };

  const emergency = (sig: NodeJS.Signals, slots: Slot[], why: string): void => {
    if (emergencyStarted || exited) return;
    emergencyStarted = true;
    const whats = slots.map((s) => s.entry.emergencyWhat).filter((w): w is string => w !== undefined);
    o.log(`tsm ${o.command}: ${why}${whats.length > 0 ? `: ${whats.join('; ')}` : ''}`);
    const all = Promise.all(
      slots.map((s) =>
        s.entry.emergency
          ? s.entry.emergency().then(noteOf, (err: unknown) => `emergency cleanup failed: ${firstLine(err)}`)
          : Promise.resolve(undefined),
      ),
    );
    after(emergencyMs, () => finish(sig, ['the emergency cleanup did not finish in time']));
    void all.then((notes) => finish(sig, notes));
  };

  const onSignal = (sig: NodeJS.Signals): void => {
    const slots = [...stack].reverse();
    if (got !== null) {
      emergency(got, slots, `${sig} again: exiting now`);
      return;
    }
    got = sig;
    controller.abort();
    const whats = slots.map((s) => s.entry.what);
    o.log(`tsm ${o.command}: ${sig}: ${whats.length > 0 ? whats.join('; ') : 'stopping'}`);
    after(graceMs, () => emergency(sig, slots, 'cleanup is taking too long'));
    void (async () => {
      const notes: (string | undefined)[] = [];
      for (const s of slots) {
        try {
          notes.push(await s.run());
        } catch (err) {
          notes.push(`cleanup failed: ${firstLine(err)}`);
        }
      }
      if (!emergencyStarted) finish(sig, notes);
    })();
  };

  for (const s of SIGNALS) source.on(s, onSignal);

  return {
    signal: controller.signal,
    received: () => got,
    size: () => stack.length,
    push(entry) {
      let running: Promise<string | undefined> | undefined;
      const slot: Slot = {
        entry,
        run: () => (running ??= entry.run().then(noteOf).finally(() => remove())),
      };
      const remove = (): void => {
        const i = stack.indexOf(slot);
        if (i >= 0) stack.splice(i, 1);
      };
      stack.push(slot);
      return { run: slot.run, release: remove };
    },
    dispose() {
      for (const s of SIGNALS) source.removeListener(s, onSignal);
    },
  };
}

/**
 * Cleanups for code that runs outside the CLI's main() (a test, a script): nothing is listened
 * to, `signal` is never aborted, and every entry is simply run by its owner.
 */
export function detachedCleanups(): Cleanups {
  const controller = new AbortController();
  return {
    signal: controller.signal,
    received: () => null,
    push(entry) {
      let running: Promise<string | undefined> | undefined;
      return { run: () => (running ??= entry.run().then(noteOf)), release: () => {} };
    },
  };
}
