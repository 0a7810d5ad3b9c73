/**
 * The fleet's progress line on stderr, on a terminal only: `12/50 done, 2 running, 1 failed`,
 * redrawn in place; log lines of the targets are written above it. Not a terminal (CI, a pipe):
 * no progress line at all, log lines as they come.
 */
export interface FleetCounts {
  total: number;
  done: number;
  running: number;
  failed: number;
  unreachable: number;
}

export function progressText(c: FleetCounts): string {
  const parts = [`${c.done}/${c.total} done`, `${c.running} running`];
  if (c.failed > 0) parts.push(`${c.failed} failed`);
  if (c.unreachable > 0) parts.push(`${c.unreachable} unreachable`);
  return parts.join(', ');
}

export interface FleetProgress {
  update(c: FleetCounts): void;
  /** A log line: above the progress line. */
  log(line: string): void;
  /** Clears the progress line (before the report). */
  done(): void;
}

/** The stream stands in for process.stderr in tests (anything with write() and isTTY). */
export function makeFleetProgress(stream: Pick<NodeJS.WriteStream, 'write' | 'isTTY'> = process.stderr): FleetProgress {
  if (stream.isTTY !== true) {
    return { update: () => {}, log: (line) => void stream.write(line + '\n'), done: () => {} };
  }
  let current = '';
  const clear = (): void => void stream.write('\r\x1b[2K');
  return {
    update(c) {
      current = progressText(c);
      clear();
      stream.write(current);
    },
    log(line) {
      clear();
      stream.write(line + '\n');
      if (current !== '') stream.write(current);
    },
    done() {
      if (current !== '') clear();
      current = '';
    },
  };
}
