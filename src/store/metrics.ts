/**
 * The Prometheus metrics of session saves (prom-client), on a registry the caller passes or a new
 * one (never prom-client's global registry). prom-client is imported lazily: it costs ~60 ms to
 * load and only code that saves sessions needs it.
 *
 * One observation per database attempt (a save retried twice is three attempts):
 *   session_save_attempts_total{status="success"|"failed"}
 *   session_save_duration_seconds{status}            (histogram)
 *   session_save_errors_total{error_type="<classified code>"}   (failed attempts only)
 * so sum(errors_total) = attempts_total{status="failed"} and duration_count{s} = attempts_total{s}.
 * A save rejected by input validation counts as one failed attempt (error_type
 * missing_required_field) that never reached the database.
 *
 * Observations are tallied in plain numbers and handed to prom-client in batches: when anything
 * reads the metrics (prom-client calls each metric's documented `collect()` hook before it reports
 * a value: a scrape, `registry.metrics()`, `metric.get()`), and every 1,024 attempts, so memory
 * stays bounded when nobody scrapes. The numbers are the same; prom-client's per-call label hashing
 * and bucket search move out of the save path (bench/README.md, upsert-vs-pgbench). Only public
 * prom-client API is used. A registry that already holds these metrics without tsm's tally (made
 * by other code) gets every observation directly.
 */
import type { Counter, Histogram, Registry } from 'prom-client';

export type SaveStatus = 'success' | 'failed';

export const METRIC = {
  attempts: 'session_save_attempts_total',
  duration: 'session_save_duration_seconds',
  errors: 'session_save_errors_total',
} as const;

/** Upserts take about a millisecond; timeouts take seconds. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface SessionMetrics {
  readonly registry: Registry;
  /** Records one attempt. */
  observe(status: SaveStatus, seconds: number, errorType?: string): void;
}

type PromClient = typeof import('prom-client');
let loading: Promise<PromClient> | undefined;

export function loadPromClient(): Promise<PromClient> {
  return (loading ??= import('prom-client'));
}

/** A new, empty registry (not the global one). */
export async function newRegistry(): Promise<Registry> {
  const { Registry } = await loadPromClient();
  return new Registry();
}

const BATCH = 1024;

/** The observations not yet handed to prom-client, shared by every store on one registry. */
class Tally {
  attempts = { success: 0, failed: 0 };
  errors = new Map<string, number>();
  durations = new Float64Array(BATCH);
  failedAt = new Uint8Array(BATCH);
  n = 0;

  constructor(
    private readonly attemptsMetric: Counter<'status'>,
    private readonly durationMetric: Histogram<'status'>,
    private readonly errorsMetric: Counter<'error_type'>,
  ) {}

  observe(status: SaveStatus, seconds: number, errorType?: string): void {
    const failed = status === 'failed';
    if (failed) {
      this.attempts.failed++;
      const t = errorType ?? 'database_error';
      this.errors.set(t, (this.errors.get(t) ?? 0) + 1);
    } else {
      this.attempts.success++;
    }
    this.durations[this.n] = seconds;
    this.failedAt[this.n] = failed ? 1 : 0;
    if (++this.n === BATCH) this.flush();
  }

  /** Hands everything tallied to prom-client (public API only). */
  flush(): void {
    const { success, failed } = this.attempts;
    if (success > 0) this.attemptsMetric.inc({ status: 'success' }, success);
    if (failed > 0) this.attemptsMetric.inc({ status: 'failed' }, failed);
    this.attempts.success = 0;
    this.attempts.failed = 0;
    for (const [t, k] of this.errors) this.errorsMetric.inc({ error_type: t }, k);
    this.errors.clear();
    if (this.n > 0) {
      const ok = this.durationMetric.labels({ status: 'success' });
      const bad = this.durationMetric.labels({ status: 'failed' });
      for (let i = 0; i < this.n; i++) (this.failedAt[i] ? bad : ok).observe(this.durations[i]!);
      this.n = 0;
    }
  }
}

const tallies = new WeakMap<Registry, Tally>();

/** Registers the three metrics on `registry` (reusing them when a previous store already did). */
export async function createSessionMetrics(registry?: Registry): Promise<SessionMetrics> {
  const pc = await loadPromClient();
  const reg = registry ?? new pc.Registry();
  const shared = tallies.get(reg);
  if (shared && reg.getSingleMetric(METRIC.attempts)) {
    return { registry: reg, observe: (status, seconds, errorType) => shared.observe(status, seconds, errorType) };
  }
  const existing = <T>(name: string): T | undefined => reg.getSingleMetric(name) as T | undefined;
  const mine: { tally?: Tally } = {};
  // prom-client calls collect() (with the metric as `this`) before it reports the metric's values.
  const collect = function (): void {
    mine.tally?.flush();
  };
  const found = [existing(METRIC.attempts), existing(METRIC.duration), existing(METRIC.errors)];
  const attempts =
    existing<Counter<'status'>>(METRIC.attempts) ??
    new pc.Counter({
      name: METRIC.attempts,
      help: 'Session save attempts (each database round trip, retries included), by outcome.',
      labelNames: ['status'],
      registers: [reg],
      collect,
    });
  const duration =
    existing<Histogram<'status'>>(METRIC.duration) ??
    new pc.Histogram({
      name: METRIC.duration,
      help: 'Duration of each session save attempt in seconds, by outcome.',
      labelNames: ['status'],
      buckets: DURATION_BUCKETS,
      registers: [reg],
      collect,
    });
  const errors =
    existing<Counter<'error_type'>>(METRIC.errors) ??
    new pc.Counter({
      name: METRIC.errors,
      help: 'Failed session save attempts by classified error code (tsm classifyError).',
      labelNames: ['error_type'],
      registers: [reg],
      collect,
    });
  // Both outcome series exist from the start, so rate() and alerts see a 0, not "no data".
  attempts.inc({ status: 'success' }, 0);
  attempts.inc({ status: 'failed' }, 0);
  if (found.some((m) => m !== undefined)) {
    // Metrics made elsewhere: no collect hook of ours on them, so every observation goes straight in.
    return {
      registry: reg,
      observe(status, seconds, errorType) {
        attempts.inc({ status });
        duration.observe({ status }, seconds);
        if (status === 'failed') errors.inc({ error_type: errorType ?? 'database_error' });
      },
    };
  }
  const t = new Tally(attempts, duration, errors);
  mine.tally = t;
  tallies.set(reg, t);
  return { registry: reg, observe: (status, seconds, errorType) => t.observe(status, seconds, errorType) };
}
