/**
 * `tsm migrate up/down` on a terminal: one progress line on stderr while an index builds, from
 * the engine's progress records (src/migrate/progress.ts), redrawn in place and cleared when the
 * statement ends. Not a TTY (CI logs, pipes): no progress line at all, the environment is the
 * context unchanged. `--json` is unaffected either way (stdout).
 */
import type { Context } from '../../context.js';
import type { IndexBuildProgress, IndexProgressListener } from '../../../migrate/progress.js';
import type { MigrateEnv } from '../../../migrate/session.js';

const int = (n: number): string => n.toLocaleString('en');

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** One line: `building <index> on <table>: <phase> <done> of <total> <unit> (n%) · 12s · ~40s left in this phase`. */
export function renderIndexProgress(p: IndexBuildProgress): string {
  const what = p.index ? `${p.index}${p.table ? ` on ${p.table}` : ''}` : (p.table ?? 'an index');
  const parts = [`tsm migrate: ${p.command.startsWith('REINDEX') ? 'rebuilding' : 'building'} ${what}: ${p.phase}`];
  if (p.unit !== null && p.total !== null && p.done !== null && p.total > 0) {
    const pct = p.unit === 'blocks' || p.unit === 'tuples' ? ` (${Math.min(100, Math.floor((100 * p.done) / p.total))}%)` : '';
    parts[0] += ` ${int(p.done)} of ${int(p.total)} ${p.unit}${pct}`;
  }
  if (p.waiting_for_pid !== null) parts[0] += ` (waiting for pid ${p.waiting_for_pid})`;
  parts.push(duration(p.elapsed_ms));
  if (p.phase_left_ms !== null && p.phase_left_ms > 0) parts.push(`~${duration(p.phase_left_ms)} left in this phase`);
  return parts.join(' · ');
}

/** A line redrawn in place on a terminal stream. */
function statusLine(stream: NodeJS.WriteStream): { show(text: string): void; clear(): void } {
  let shown = false;
  return {
    show(text) {
      const width = Math.max(20, (stream.columns || 100) - 1);
      const cut = [...text].length > width ? [...text].slice(0, width - 1).join('') + '…' : text;
      stream.write(`\r\x1b[2K${cut}`);
      shown = true;
    },
    clear() {
      if (shown) stream.write('\r\x1b[2K');
      shown = false;
    },
  };
}

/** The environment the migrate engine gets: with index-build progress when `stream` is a terminal. */
export function migrateEnv(ctx: Context, stream: NodeJS.WriteStream = process.stderr): MigrateEnv {
  if (!stream.isTTY) return ctx;
  const line = statusLine(stream);
  const progress: IndexProgressListener = {
    update: (p) => line.show(renderIndexProgress(p)),
    done: () => line.clear(),
  };
  return {
    ...ctx,
    log: (message: string) => {
      line.clear();
      ctx.log(message);
    },
    progress,
  };
}
