/**
 * Progress of long index builds. While a CREATE INDEX / REINDEX statement runs on the migration's
 * connection (which is busy with it), a second connection polls `pg_stat_progress_create_index`
 * for that backend and hands each sample, as a record, to a listener: the table (a partition, for
 * a partitioned telegram_sessions), the index, the phase, what the phase counts (blocks, tuples,
 * or the transactions it waits for) done of total, the time since the statement started, and an
 * estimate of what is left of the phase from its rate so far.
 *
 * The first poll happens one interval after the statement starts, so quick statements never open
 * the second connection. Progress is a view, never a reason to fail: a poll that fails is skipped,
 * and the watcher never delays the statement's result (its connection closes in the background).
 * The engine calls this only when its caller asked for progress (the CLI: stderr is a TTY).
 */
import type { Client } from 'pg';

export interface IndexBuildProgress {
  /** The backend building the index (the migration's own connection). */
  pid: number;
  /** The table being indexed (a partition's name for a partitioned table), or null when not yet known. */
  table: string | null;
  /** The index being built, or null in the first moments of a build. */
  index: string | null;
  /** CREATE INDEX, CREATE INDEX CONCURRENTLY, REINDEX, REINDEX CONCURRENTLY. */
  command: string;
  /** PostgreSQL's phase name, e.g. `building index: scanning table`, `waiting for old snapshots`. */
  phase: string;
  /** What `done` / `total` count in this phase, or null when the phase reports no counts. */
  unit: 'blocks' | 'tuples' | 'transactions' | 'partitions' | null;
  done: number | null;
  total: number | null;
  /** In a waiting phase: the backend it waits for (0/none → null). */
  waiting_for_pid: number | null;
  /** Since the statement started. */
  elapsed_ms: number;
  /** Since this phase was first seen. */
  phase_elapsed_ms: number;
  /** What is left of this phase at its rate so far; null when that cannot be told yet. */
  phase_left_ms: number | null;
}

export interface IndexProgressListener {
  /** A new sample of a running build. */
  update(progress: IndexBuildProgress): void;
  /** The statement ended (whichever way): whatever shows progress can go. */
  done(): void;
}

export interface WatchOptions {
  /** A new connection for the polls. */
  connect(): Promise<Client>;
  /** The backend running the statement. */
  pid: number;
  listener: IndexProgressListener;
  /** Between polls; default 1000 ms. */
  intervalMs?: number;
}

/** Statements whose progress pg_stat_progress_create_index reports. */
export function isIndexBuild(sql: string): boolean {
  return /^\s*(CREATE\s+(UNIQUE\s+)?INDEX|REINDEX)\b/i.test(sql);
}

/** The backend pid of a connection (asked, not taken from the startup packet: a pooler sends its own key). */
export async function backendPid(client: Client): Promise<number> {
  const r = await client.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid');
  return Number(r.rows[0]?.pid);
}

const SAMPLE_SQL = `SELECT p.command, p.phase, c.relname::text AS table_name, ic.relname::text AS index_name,
       p.lockers_total, p.lockers_done, p.current_locker_pid, p.blocks_total, p.blocks_done,
       p.tuples_total, p.tuples_done, p.partitions_total, p.partitions_done
  FROM pg_catalog.pg_stat_progress_create_index p
  LEFT JOIN pg_catalog.pg_class c ON c.oid = p.relid
  LEFT JOIN pg_catalog.pg_class ic ON ic.oid = p.index_relid
 WHERE p.pid = $1::int`;

interface Sample {
  command: string | null;
  phase: string | null;
  table_name: string | null;
  index_name: string | null;
  [count: string]: unknown;
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

/** Turns samples into records; remembers when each phase was first seen and how far it was then. */
export class ProgressTracker {
  private phaseKey: string | null = null;
  private phaseSince = 0;
  private phaseDoneAtStart = 0;

  constructor(
    private readonly pid: number,
    private readonly startedAt: number,
  ) {}

  record(s: Sample, now: number): IndexBuildProgress {
    const phase = s.phase ?? 'unknown';
    let unit: IndexBuildProgress['unit'] = null;
    let done: number | null = null;
    let total: number | null = null;
    let waiting: number | null = null;
    if (phase.startsWith('waiting')) {
      unit = 'transactions';
      done = num(s.lockers_done);
      total = num(s.lockers_total);
      waiting = num(s.current_locker_pid) || null;
    } else if (num(s.blocks_total) > 0) {
      unit = 'blocks';
      done = num(s.blocks_done);
      total = num(s.blocks_total);
    } else if (num(s.tuples_total) > 0) {
      unit = 'tuples';
      done = num(s.tuples_done);
      total = num(s.tuples_total);
    } else if (num(s.partitions_total) > 0) {
      unit = 'partitions';
      done = num(s.partitions_done);
      total = num(s.partitions_total);
    }
    const key = `${s.index_name ?? ''}\0${phase}\0${unit ?? ''}`;
    if (key !== this.phaseKey) {
      this.phaseKey = key;
      this.phaseSince = now;
      this.phaseDoneAtStart = done ?? 0;
    }
    let left: number | null = null;
    if ((unit === 'blocks' || unit === 'tuples') && done !== null && total !== null) {
      if (done >= total) left = 0;
      else if (done > this.phaseDoneAtStart && now > this.phaseSince) {
        const rate = (done - this.phaseDoneAtStart) / (now - this.phaseSince);
        left = Math.round((total - done) / rate);
      }
    }
    return {
      pid: this.pid,
      table: s.table_name,
      index: s.index_name,
      command: s.command ?? 'CREATE INDEX',
      phase,
      unit,
      done,
      total,
      waiting_for_pid: waiting,
      elapsed_ms: now - this.startedAt,
      phase_elapsed_ms: now - this.phaseSince,
      phase_left_ms: left,
    };
  }
}

/** Runs `run` (the statement) while polling its progress; resolves or rejects exactly as `run` does. */
export async function withIndexProgress<T>(opts: WatchOptions, run: () => Promise<T>): Promise<T> {
  const interval = Math.max(10, opts.intervalMs ?? 1000);
  const tracker = new ProgressTracker(opts.pid, Date.now());
  let stopped = false;
  let client: Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  let inflight: Promise<void> = Promise.resolve();

  const poll = async (): Promise<void> => {
    try {
      if (!client) {
        const c = await opts.connect();
        c.on('error', () => {});
        client = c;
      }
      if (stopped) return;
      const r = await client.query<Sample>(SAMPLE_SQL, [opts.pid]);
      const row = r.rows[0];
      if (!stopped && row) opts.listener.update(tracker.record(row, Date.now()));
    } catch {
      // A sample missed: progress is only a view.
    }
  };
  const schedule = (): void => {
    timer = setTimeout(() => {
      inflight = poll().then(() => {
        if (!stopped) schedule();
      });
    }, interval);
    timer.unref();
  };

  schedule();
  try {
    return await run();
  } finally {
    stopped = true;
    if (timer) clearTimeout(timer);
    opts.listener.done();
    // Close the polling connection once its last poll is over, without holding up the result.
    void inflight.then(async () => {
      await client?.end().catch(() => {});
    });
  }
}
