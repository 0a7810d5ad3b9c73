/**
 * dedupe's progress line on stderr, only on a terminal: one line redrawn in place (the pass, the
 * rows moved of those planned, the batches, the rate and an estimate of what is left; the elapsed
 * time while a scan runs). Without a terminal nothing is drawn: the final report says it all.
 */
import type { DedupeProgress } from '../../../dedupe/engine.js';

export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

export interface DedupeProgressLine {
  update(p: DedupeProgress): void;
  /** A line that stays (printed above the progress line). */
  log(line: string): void;
  /** Clears the line and stops its timer. */
  done(): void;
}

const n = (x: number): string => Math.round(x).toLocaleString('en-US');

function seconds(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The text of the line for one progress report (exported for tests). */
export function progressText(p: DedupeProgress, table: string, nowMs = p.elapsedMs): string {
  const pass = `pass ${p.pass}`;
  switch (p.phase) {
    case 'scanning':
      return `tsm dedupe: ${pass}: scanning ${table} for duplicate user_ids… ${seconds(nowMs)}`;
    case 'verifying':
      return `tsm dedupe: checking the ${n(p.moved)} moved rows row by row… ${seconds(nowMs)}`;
    case 'moving': {
      const rate = p.elapsedMs > 0 ? (p.movedThisPass * 1000) / p.elapsedMs : 0;
      const left = Math.max(0, p.planned - p.movedThisPass);
      const eta = rate > 0 && left > 0 ? `, about ${seconds((left / rate) * 1000)} left` : '';
      return `tsm dedupe: ${pass}: ${n(p.movedThisPass)} of ${n(p.planned)} rows moved, ${n(p.batches)} batch${p.batches === 1 ? '' : 'es'}, ${n(rate)} rows/s${eta}`;
    }
  }
}

export function dedupeProgressLine(stream: ProgressStream, table: string, enabled = stream.isTTY === true): DedupeProgressLine {
  if (!enabled) return { update: () => {}, log: () => {}, done: () => {} };
  let current: DedupeProgress | null = null;
  let phaseStart = Date.now();
  let drawn = false;
  let lastDraw = 0;
  const clear = (): void => {
    if (drawn) stream.write('\r\x1b[2K');
    drawn = false;
  };
  const draw = (): void => {
    if (current === null) return;
    lastDraw = Date.now();
    clear();
    stream.write(progressText(current, table, current.phase === 'moving' ? current.elapsedMs : Date.now() - phaseStart));
    drawn = true;
  };
  // Scans report once when they start: the timer keeps their elapsed time moving.
  const timer = setInterval(() => {
    if (current && current.phase !== 'moving') draw();
  }, 250);
  timer.unref();
  return {
    update(p) {
      const changed = current === null || p.phase !== current.phase || p.pass !== current.pass;
      if (changed) phaseStart = Date.now();
      current = p;
      if (changed || Date.now() - lastDraw >= 100) draw();
    },
    log(line) {
      clear();
      stream.write(line + '\n');
      draw();
    },
    done() {
      clearInterval(timer);
      clear();
      current = null;
    },
  };
}
