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
 * A save only bumps plain numbers (no label hashing, no allocation); the prom-client metrics are
 * brought up to date when they are collected (a scrape, registry.metrics()). That took ~12 µs of
 * client CPU off every save (bench/README.md, upsert-vs-pgbench). When the registry already holds
 * metrics of these names that tsm did not create, they are updated directly on every save.
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

interface Hist {
  buckets: Float64Array;
  sum: number;
  count: number;
}

/** What the saves accumulate, shared by every store on one registry. */
interface Tally {
  attempts: Record<SaveStatus, number>;
  errors: Map<string, number>;
  hist: Record<SaveStatus, Hist>;
}

const newHist = (): Hist => ({ buckets: new Float64Array(DURATION_BUCKETS.length), sum: 0, count: 0 });

/** The tally behind each attempts counter tsm created (so a second store on the registry shares it). */
const TALLIES = new WeakMap<object, Tally>();

/** Entry of prom-client's histogram hashMap (prom-client 15: non-cumulative counts per bound). */
interface HistEntry {
  labels: Record<string, string>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

function tallyObserver(tally: Tally): (status: SaveStatus, seconds: number, errorType?: string) => void {
  const bounds = DURATION_BUCKETS;
  return (status, seconds, errorType) => {
    tally.attempts[status]++;
    if (status === 'failed') {
      const k = errorType ?? 'database_error';
      tally.errors.set(k, (tally.errors.get(k) ?? 0) + 1);
    }
    const h = tally.hist[status];
    h.count++;
    h.sum += seconds;
    for (let i = 0; i < bounds.length; i++) {
      if (seconds <= bounds[i]!) {
        h.buckets[i]++;
        break;
      }
    }
  };
}

function createTallied(pc: PromClient, reg: Registry): SessionMetrics {
  const tally: Tally = { attempts: { success: 0, failed: 0 }, errors: new Map(), hist: { success: newHist(), failed: newHist() } };
  const counterReset = pc.Counter.prototype.reset;
  const histogramReset = pc.Histogram.prototype.reset;
  const attempts: Counter<'status'> = new pc.Counter({
    name: METRIC.attempts,
    help: 'Session save attempts (each database round trip, retries included), by outcome.',
    labelNames: ['status'],
    registers: [reg],
    collect() {
      counterReset.call(this);
      // Both outcome series exist from the start, so rate() and alerts see a 0, not "no data".
      this.inc({ status: 'success' }, tally.attempts.success);
      this.inc({ status: 'failed' }, tally.attempts.failed);
    },
  });
  const duration: Histogram<'status'> = new pc.Histogram({
    name: METRIC.duration,
    help: 'Duration of each session save attempt in seconds, by outcome.',
    labelNames: ['status'],
    buckets: DURATION_BUCKETS,
    registers: [reg],
    collect() {
      histogramReset.call(this);
      for (const status of ['success', 'failed'] as const) {
        const h = tally.hist[status];
        if (h.count === 0) continue;
        this.zero({ status });
        const entries = Object.values((this as unknown as { hashMap: Record<string, HistEntry> }).hashMap);
        const entry = entries.find((e) => e.labels.status === status);
        if (!entry) continue;
        DURATION_BUCKETS.forEach((bound, i) => (entry.bucketValues[bound] = h.buckets[i]));
        entry.sum = h.sum;
        entry.count = h.count;
      }
    },
  });
  const errors: Counter<'error_type'> = new pc.Counter({
    name: METRIC.errors,
    help: 'Failed session save attempts by classified error code (tsm classifyError).',
    labelNames: ['error_type'],
    registers: [reg],
    collect() {
      counterReset.call(this);
      for (const [error_type, n] of tally.errors) this.inc({ error_type }, n);
    },
  });
  // registry.resetMetrics() resets the tallies too.
  attempts.reset = () => {
    tally.attempts.success = tally.attempts.failed = 0;
    counterReset.call(attempts);
  };
  duration.reset = () => {
    tally.hist.success = newHist();
    tally.hist.failed = newHist();
    histogramReset.call(duration);
  };
  errors.reset = () => {
    tally.errors.clear();
    counterReset.call(errors);
  };
  TALLIES.set(attempts, tally);
  return { registry: reg, observe: tallyObserver(tally) };
}

/** Registers the three metrics on `registry` (reusing them when a previous store already did). */
export async function createSessionMetrics(registry?: Registry): Promise<SessionMetrics> {
  const pc = await loadPromClient();
  const reg = registry ?? new pc.Registry();
  const names = Object.values(METRIC);
  const existing = names.map((n) => reg.getSingleMetric(n));
  if (existing.every((m) => m === undefined)) return createTallied(pc, reg);
  const tally = existing[0] ? TALLIES.get(existing[0]) : undefined;
  if (tally) return { registry: reg, observe: tallyObserver(tally) };

  // Metrics of these names that tsm did not create (or only some of them): update them directly.
  const attempts =
    (existing[0] as Counter<'status'> | undefined) ??
    new pc.Counter({ name: METRIC.attempts, help: 'Session save attempts, by outcome.', labelNames: ['status'], registers: [reg] });
  const duration =
    (existing[1] as Histogram<'status'> | undefined) ??
    new pc.Histogram({ name: METRIC.duration, help: 'Session save attempt duration, by outcome.', labelNames: ['status'], buckets: DURATION_BUCKETS, registers: [reg] });
  const errors =
    (existing[2] as Counter<'error_type'> | undefined) ??
    new pc.Counter({ name: METRIC.errors, help: 'Failed session save attempts by error code.', labelNames: ['error_type'], registers: [reg] });
  return {
    registry: reg,
    observe(status, seconds, errorType) {
      attempts.inc({ status });
      duration.observe({ status }, seconds);
      if (status === 'failed') errors.inc({ error_type: errorType ?? 'database_error' });
    },
  };
}
