/**
 * `tsm bench`, the engine: `clients` workers upsert sessions through one SessionStore (a pool of
 * `clients` connections, prepared statements, metrics on: what an application runs) for
 * `durationMs`, each call on a random one of `users` user ids. Reports calls/s and latency
 * percentiles. Its rows (tenant tsm-bench) are removed afterwards, also on Ctrl-C.
 */
import type { ConnectionSettings } from '../../../config.js';
import { classifyError } from '../../../db/classify.js';
import { FailError, TsmError } from '../../../errors.js';
import { makeSessionString } from '../../../store/session-string.js';
import type { Via } from '../../../store/sql.js';
import { SessionStore } from '../../../store/store.js';
import type { Cleanups } from '../../cleanup.js';
import { connectTimeoutMs, openWriteRun, type ServerTimeouts } from '../../test-rows.js';
import type { BenchCommandOptions } from './options.js';

export const BENCH_TENANT = 'tsm-bench';

/** What the engine needs: the command's options (options.ts) plus the connection and the cleanups. */
export interface BenchOptions extends BenchCommandOptions {
  settings: ConnectionSettings;
  schema: string;
  /** The cleanup stack (Ctrl-C removes the bench rows) and its abort signal. */
  cleanups: Cleanups;
  log(line: string): void;
}

export interface BenchReport {
  database: string;
  schema: string;
  via: Via;
  clients: number;
  duration_s: number;
  warmup_s: number;
  users: number;
  length: number;
  /** Whether the calls ended on named prepared statements (false: --no-prepare, or a pooler conflict switched them off). */
  prepared_statements: boolean;
  calls: number;
  errors: Record<string, number>;
  /** One example (SQLSTATE and message) per error code. */
  error_details: Record<string, { sqlstate: string | null; message: string }>;
  /** The role's timeouts (and where they were set), to name the one that fired. */
  server_timeouts: ServerTimeouts;
  calls_per_second: number;
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  /** CPU time (user + system) this process spent per call while the clock ran, in µs. */
  client_cpu_us_per_call: number;
  rows_removed: number | null;
  ok: boolean;
}

/** The q-quantile (0…1) of sorted values, nearest rank. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const signal = o.cleanups.signal;
  // No idle timeout: a bench pool is never idle, and pg-pool would arm and clear a timer on every call.
  const run = await openWriteRun(
    { settings: o.settings, schema: o.schema, tenant: BENCH_TENANT, label: 'bench', connections: o.clients, idleTimeoutMillis: 0, keep: false, cleanups: o.cleanups },
    (pool) => new SessionStore({ pool, schema: o.schema, via: o.via, preparedStatements: o.prepare, connectTimeoutMs: connectTimeoutMs(o.settings) }),
  );
  const { store, pool, rows } = run;
  const ids = Array.from({ length: o.users }, () => rows.next());
  const sessions = Array.from({ length: 16 }, () => makeSessionString(o.length));

  const errors: Record<string, number> = {};
  const details: Record<string, { sqlstate: string | null; message: string }> = {};
  let latencies = new Float64Array(1 << 16);
  let n = 0;
  let calls = 0;
  let elapsedMs = 0;
  let cpuUs = 0;
  let failure: unknown;
  try {
    // Connect every client and prepare the statement on each before the clock starts.
    const warm = await Promise.all(Array.from({ length: o.clients }, () => pool.connect()));
    warm.forEach((c) => c.release());
    run.wrote();
    await Promise.all(
      Array.from({ length: o.clients }, (_, i) =>
        store.save({ tenantId: BENCH_TENANT, userId: ids[i % ids.length]!, sessionStringEnc: sessions[0]!, keyId: 'tsm-bench-key' }),
      ),
    );
    // Untimed warm-up: the same calls, so the measured ones run on optimised code (a JIT warms up,
    // pgbench has nothing to warm), as pgbench leaves its connection time out of its tps.
    if (o.warmupMs > 0) {
      o.log(`tsm bench: warming up for ${o.warmupMs / 1000} s`);
      const until = performance.now() + o.warmupMs;
      await Promise.all(
        Array.from({ length: o.clients }, async (_, w) => {
          for (let k = w; !signal.aborted && performance.now() < until; k++) {
            const userId = ids[Math.floor(Math.random() * ids.length)]!;
            await store.save({ tenantId: BENCH_TENANT, userId, sessionStringEnc: sessions[k & 15]!, keyId: 'tsm-bench-key', status: 'authorized' });
          }
        }),
      );
    }
    o.log(`tsm bench: ${o.clients} client${o.clients === 1 ? '' : 's'} for ${o.durationMs / 1000} s`);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const deadline = t0 + o.durationMs;
    const worker = async (w: number): Promise<void> => {
      let k = w;
      while (!signal.aborted) {
        const start = performance.now();
        if (start >= deadline) break;
        const userId = ids[Math.floor(Math.random() * ids.length)]!;
        const r = await store.save({ tenantId: BENCH_TENANT, userId, sessionStringEnc: sessions[k++ & 15]!, keyId: 'tsm-bench-key', status: 'authorized' });
        const ms = performance.now() - start;
        calls++;
        if (!r.ok) {
          errors[r.code] = (errors[r.code] ?? 0) + 1;
          details[r.code] ??= { sqlstate: r.sqlstate, message: r.details };
        }
        if (n === latencies.length) {
          const bigger = new Float64Array(latencies.length * 2);
          bigger.set(latencies);
          latencies = bigger;
        }
        latencies[n++] = ms;
      }
    };
    await Promise.all(Array.from({ length: o.clients }, (_, w) => worker(w)));
    elapsedMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    cpuUs = cpu.user + cpu.system;
  } catch (err) {
    failure = err;
  }

  const { removed, cleanupError, note } = await run.finish();
  // Interrupted: the cleanup stack has the same note and ends the run (exit 128 + n).
  signal.throwIfAborted();
  if (failure !== undefined) {
    if (failure instanceof TsmError) throw failure;
    const c = classifyError(failure);
    throw new FailError(`bench stopped: ${c.code}${c.sqlstate ? ` (${c.sqlstate})` : ''}: ${c.message.split('\n')[0]}; ${note}`);
  }
  if (cleanupError) o.log(`tsm bench: ${note}`);

  const sorted = latencies.subarray(0, n).sort();
  const okCalls = calls - Object.values(errors).reduce((a, b) => a + b, 0);
  return {
    database: o.settings.display,
    schema: o.schema,
    via: o.via,
    prepared_statements: store.preparedStatements,
    clients: o.clients,
    duration_s: round3(elapsedMs / 1000),
    warmup_s: o.warmupMs / 1000,
    users: o.users,
    length: o.length,
    calls,
    errors,
    error_details: details,
    server_timeouts: run.timeouts,
    calls_per_second: elapsedMs > 0 ? Math.round((okCalls / elapsedMs) * 1000 * 10) / 10 : 0,
    latency_ms: {
      p50: round3(quantile(sorted, 0.5)),
      p95: round3(quantile(sorted, 0.95)),
      p99: round3(quantile(sorted, 0.99)),
      max: round3(n > 0 ? sorted[n - 1]! : 0),
    },
    client_cpu_us_per_call: calls > 0 ? Math.round((cpuUs / calls) * 10) / 10 : 0,
    rows_removed: removed,
    ok: okCalls === calls && calls > 0 && cleanupError === null,
  };
}
