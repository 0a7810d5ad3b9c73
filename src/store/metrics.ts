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

/** Registers the three metrics on `registry` (reusing them when a previous store already did). */
export async function createSessionMetrics(registry?: Registry): Promise<SessionMetrics> {
  const pc = await loadPromClient();
  const reg = registry ?? new pc.Registry();
  const existing = <T>(name: string): T | undefined => reg.getSingleMetric(name) as T | undefined;
  const attempts =
    existing<Counter<'status'>>(METRIC.attempts) ??
    new pc.Counter({
      name: METRIC.attempts,
      help: 'Session save attempts (each database round trip, retries included), by outcome.',
      labelNames: ['status'],
      registers: [reg],
    });
  const duration =
    existing<Histogram<'status'>>(METRIC.duration) ??
    new pc.Histogram({
      name: METRIC.duration,
      help: 'Duration of each session save attempt in seconds, by outcome.',
      labelNames: ['status'],
      buckets: DURATION_BUCKETS,
      registers: [reg],
    });
  const errors =
    existing<Counter<'error_type'>>(METRIC.errors) ??
    new pc.Counter({
      name: METRIC.errors,
      help: 'Failed session save attempts by classified error code (tsm classifyError).',
      labelNames: ['error_type'],
      registers: [reg],
    });
  // Both outcome series exist from the start, so rate() and alerts see a 0, not "no data".
  attempts.inc({ status: 'success' }, 0);
  attempts.inc({ status: 'failed' }, 0);
  return {
    registry: reg,
    observe(status, seconds, errorType) {
      attempts.inc({ status });
      duration.observe({ status }, seconds);
      if (status === 'failed') errors.inc({ error_type: errorType ?? 'database_error' });
    },
  };
}
