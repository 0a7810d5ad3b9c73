/**
 * Deadlines without a timer per call. Every attempt of a save has a moment by which it must have
 * settled (first the connect deadline, then the save's); a `Watch` keeps the attempts in flight in
 * a Set and ONE timer armed for the earliest of them. Attempts that finish in time leave the Set
 * and touch no timer: in steady state the timer fires about once per deadline span (seconds) and
 * re-arms for what is then in flight, instead of an arm and a clear per call (bench/README.md).
 */

export interface Watched {
  /** performance.now() by which the attempt must have settled or been told it is late. */
  due: number;
  /** Called once `due` has passed; may push `due` later (it then stays watched) or leave. */
  expire(now: number): void;
}

export class Watch {
  private readonly pending = new Set<Watched>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;

  add(w: Watched): void {
    this.pending.add(w);
    if (w.due < this.armedFor) this.arm(w.due);
  }

  delete(w: Watched): void {
    this.pending.delete(w);
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(this.sweep, Math.max(0, at - performance.now()));
    // A save in flight keeps its own socket (and so the process) alive; this timer never does.
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = performance.now();
    for (const w of this.pending) if (w.due <= now + 0.5) w.expire(now);
    let next = Infinity;
    for (const w of this.pending) if (w.due < next) next = w.due;
    if (next !== Infinity) this.arm(next);
  };
}
