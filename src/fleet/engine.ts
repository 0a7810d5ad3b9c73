/**
 * The fleet engine: runs one piece of work per target, bounded by
 * - `parallel`: targets running at once;
 * - a connection budget per server: each target holds `weight` connections of its server's
 *   budget while it runs (targets on the same server share it; the budget is asked for lazily, when
 *   the first target of that server is next, so a slow server never delays the others' start);
 * - `canary`: the first N targets run first; if one of them is not ok, nothing else starts;
 * - `onError: 'stop'`: after a target that is not ok, no new target starts (running ones finish);
 * - `signal` (Ctrl-C): no new target starts; running ones get the same signal from their caller
 *   and finish at their own safe point.
 * Targets that never started are `skipped`, with the reason. The engine prints nothing and never
 * exits; the work itself (`run`) is the caller's: the CLI runs a command's own run() per target.
 */
export type TargetStatus = 'ok' | 'failed' | 'unreachable' | 'skipped';
export type OnError = 'stop' | 'continue';
export const ON_ERROR = ['stop', 'continue'] as const satisfies readonly OnError[];

export interface FleetTarget {
  readonly name: string;
  /** The masked connection string (never the password). */
  readonly url: string;
  /** Targets with the same key share one connection budget (host and port). */
  readonly server: string;
}

/** What running one target gave. */
export interface TargetRun {
  /** The command's exit code: 0 ok, 3 could not connect (unreachable), anything else failed. */
  exitCode: number;
  /** The command's own JSON document (or its error document). */
  result: unknown;
  /** One line for the table. */
  summary: string;
}

export interface TargetOutcome {
  name: string;
  url: string;
  status: TargetStatus;
  /** null for a target that never started. */
  exit_code: number | null;
  result: unknown;
  summary: string;
  /** Wall time of the target, null when skipped. */
  ms: number | null;
}

export type StopReason = { kind: 'canary' | 'stop'; after: string } | { kind: 'interrupted' };

export interface FleetRun {
  ok: boolean;
  outcomes: TargetOutcome[];
  /** Why targets were skipped, or null when all ran. */
  stopped: StopReason | null;
  /** Largest number of targets that ran at once, and the most connections held per server (by the weights). */
  peak: { running: number; connections: Record<string, number> };
  ms: number;
}

export type FleetEvent =
  | { type: 'start'; index: number; target: FleetTarget }
  | { type: 'done'; index: number; target: FleetTarget; outcome: TargetOutcome }
  | { type: 'stop'; reason: StopReason };

export interface FleetOptions<T extends FleetTarget> {
  targets: readonly T[];
  /** 1 … : targets at once. */
  parallel: number;
  /** 0 … : how many of the first targets run before the others. */
  canary: number;
  onError: OnError;
  /** Connections one target holds at most. */
  weight: number;
  /** The budget of a server (asked once per server key, with the first target that needs it); never rejects. */
  budget(server: string, first: T): Promise<number>;
  /** Runs one target; a rejection is reported as a failed target (exit 1). */
  run(target: T, index: number): Promise<TargetRun>;
  signal?: AbortSignal;
  onEvent?(e: FleetEvent): void;
}

export function statusFor(exitCode: number): TargetStatus {
  return exitCode === 0 ? 'ok' : exitCode === 3 ? 'unreachable' : 'failed';
}

export function skippedSummary(reason: StopReason): string {
  switch (reason.kind) {
    case 'canary':
      return `not started: canary ${reason.after} was not ok`;
    case 'stop':
      return `not started: stopped after ${reason.after} was not ok (--on-error stop)`;
    case 'interrupted':
      return 'not started: interrupted';
  }
}

interface Server {
  limit: number | undefined;
  asking: boolean;
  inUse: number;
}

export function runFleet<T extends FleetTarget>(o: FleetOptions<T>): Promise<FleetRun> {
  const started = Date.now();
  const n = o.targets.length;
  const outcomes: (TargetOutcome | undefined)[] = new Array<TargetOutcome | undefined>(n).fill(undefined);
  const begun = new Array<boolean>(n).fill(false);
  const servers = new Map<string, Server>();
  const peakConnections: Record<string, number> = {};
  const canary = Math.min(Math.max(0, o.canary), n);
  let running = 0;
  let peakRunning = 0;
  let asking = 0;
  let stopped: StopReason | null = null;
  const emit = (e: FleetEvent): void => {
    try {
      o.onEvent?.(e);
    } catch {
      // A progress display must never break the run.
    }
  };

  return new Promise<FleetRun>((resolve) => {
    let resolved = false;

    const isStopped = (): boolean => stopped !== null;
    const stop = (reason: StopReason): void => {
      if (stopped !== null) return;
      stopped = reason;
      emit({ type: 'stop', reason });
    };

    const onAbort = (): void => {
      stop({ kind: 'interrupted' });
      pump();
    };
    if (o.signal?.aborted) stopped = { kind: 'interrupted' };
    else o.signal?.addEventListener('abort', onAbort, { once: true });

    const serverOf = (t: T): Server => {
      let s = servers.get(t.server);
      if (!s) {
        s = { limit: undefined, asking: false, inUse: 0 };
        servers.set(t.server, s);
      }
      return s;
    };

    const finishIfDone = (): void => {
      if (resolved || running > 0 || asking > 0) return;
      const pending = outcomes.some((x, i) => x === undefined && !begun[i]);
      if (pending && stopped === null) return;
      resolved = true;
      o.signal?.removeEventListener('abort', onAbort);
      const summary = stopped === null ? '' : skippedSummary(stopped);
      const all = o.targets.map(
        (t, i): TargetOutcome => outcomes[i] ?? { name: t.name, url: t.url, status: 'skipped', exit_code: null, result: null, summary, ms: null },
      );
      resolve({
        ok: all.every((x) => x.status === 'ok'),
        outcomes: all,
        stopped,
        peak: { running: peakRunning, connections: peakConnections },
        ms: Date.now() - started,
      });
    };

    const start = (i: number, s: Server): void => {
      const t = o.targets[i]!;
      // A target always fits on an idle server, even when its budget is below the weight.
      const need = Math.min(o.weight, s.limit!);
      begun[i] = true;
      running++;
      s.inUse += need;
      peakRunning = Math.max(peakRunning, running);
      peakConnections[t.server] = Math.max(peakConnections[t.server] ?? 0, s.inUse);
      emit({ type: 'start', index: i, target: t });
      const t0 = Date.now();
      const done = (r: TargetRun): void => {
        const outcome: TargetOutcome = {
          name: t.name,
          url: t.url,
          status: statusFor(r.exitCode),
          exit_code: r.exitCode,
          result: r.result,
          summary: r.summary,
          ms: Date.now() - t0,
        };
        outcomes[i] = outcome;
        running--;
        s.inUse -= need;
        emit({ type: 'done', index: i, target: t, outcome });
        if (outcome.status !== 'ok') {
          if (i < canary) stop({ kind: 'canary', after: t.name });
          else if (o.onError === 'stop') stop({ kind: 'stop', after: t.name });
        }
        pump();
      };
      let p: Promise<TargetRun>;
      try {
        p = o.run(t, i);
      } catch (err) {
        p = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      void p.then(done, (err: unknown) => {
        const message = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
        done({ exitCode: 1, result: { ok: false, error: { code: 'unexpected', message } }, summary: `unexpected error: ${message}` });
      });
    };

    const pump = (): void => {
      if (resolved) return;
      if (stopped === null) {
        // The canaries first, alone; the rest once every canary is done.
        const canariesDone = outcomes.slice(0, canary).every((x) => x !== undefined);
        const end = canariesDone ? n : canary;
        // (A run may stop the fleet as it starts, e.g. a signal: look again before each start.)
        for (let i = 0; i < end && running < o.parallel && !isStopped(); i++) {
          if (begun[i]) continue;
          const t = o.targets[i]!;
          const s = serverOf(t);
          if (s.limit === undefined) {
            if (!s.asking) {
              s.asking = true;
              asking++;
              void o.budget(t.server, t).then(
                (limit) => {
                  s.limit = Math.max(1, Math.floor(limit));
                  s.asking = false;
                  asking--;
                  pump();
                },
                () => {
                  s.limit = Math.max(1, o.weight * o.parallel);
                  s.asking = false;
                  asking--;
                  pump();
                },
              );
            }
            continue;
          }
          if (s.inUse > 0 && s.inUse + Math.min(o.weight, s.limit) > s.limit) continue;
          start(i, s);
        }
      }
      finishIfDone();
    };

    if (n === 0) finishIfDone();
    else pump();
  });
}
