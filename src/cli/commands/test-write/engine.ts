/**
 * `tsm test-write`, the engine: the per-length checks, then the race, all through SessionStore,
 * then the removal of every test row (also after a failure and on SIGINT/SIGTERM: the run's
 * cleanup is on the CLI's cleanup stack), then the optional Prometheus textfile. Returns the full
 * report; the command maps it to JSON and text.
 */
import type { Registry } from 'prom-client';
import type { ConnectionSettings } from '../../../config.js';
import { classifyError } from '../../../db/classify.js';
import { FailError, TsmError } from '../../../errors.js';
import { loadPromClient, newRegistry } from '../../../store/metrics.js';
import type { Via } from '../../../store/sql.js';
import { SessionStore } from '../../../store/store.js';
import { writeFileAtomic } from '../../atomic-file.js';
import type { Cleanups } from '../../cleanup.js';
import { connectTimeoutMs, openWriteRun, type ServerTimeouts } from '../../test-rows.js';
import { checkLength, type LengthResult } from './lengths.js';
import type { TestWriteCommandOptions } from './options.js';
import { runRace, type RaceReport } from './race.js';

export const TEST_TENANT = 'tsm-test';
export const TEST_WRITE_SAVE_TIMEOUT_MS = 60_000;

/** What the engine needs: the command's options (options.ts) plus the connection and the cleanups. */
export interface TestWriteOptions extends Omit<TestWriteCommandOptions, 'metricsPath'> {
  settings: ConnectionSettings;
  schema: string;
  /** Absolute path of the Prometheus textfile, if any. */
  metricsPath?: string;
  /** The cleanup stack (Ctrl-C removes the test rows) and its abort signal. */
  cleanups: Cleanups;
  log(line: string): void;
}

export interface TestWriteReport {
  database: string;
  schema: string;
  via: Via;
  /** Whether the writes ended on named prepared statements (false: --no-prepare, or a pooler conflict switched them off). */
  prepared_statements: boolean;
  /** The test role's timeouts (and where they were set), to name the one that fired. */
  server_timeouts: ServerTimeouts;
  results: LengthResult[];
  race: RaceReport;
  /** Everything passed and nothing was left behind (unless --keep). */
  ok: boolean;
  run_id: string;
  /** One example per race error code. */
  race_details: Record<string, { sqlstate: string | null; message: string }>;
  rows: { tenant: string; prefix: string; created_ids: number; kept: boolean; removed: number | null; cleanup_error: string | null; delete_sql: string };
  metrics_file: string | null;
}

async function writeMetrics(path: string, registry: Registry, report: TestWriteReport): Promise<void> {
  const pc = await loadPromClient();
  const gauge = (name: string, help: string, value: number): void => {
    new pc.Gauge({ name, help, registers: [registry] }).set(value);
  };
  gauge('tsm_test_write_ok', '1 when the last tsm test-write passed, else 0.', report.ok ? 1 : 0);
  gauge('tsm_test_write_race_rows_left', 'Largest number of rows any race user id ended with (must be 1).', report.race.rows_left);
  gauge('tsm_test_write_timestamp_seconds', 'When the last tsm test-write finished (Unix time).', Math.floor(Date.now() / 1000));
  await writeFileAtomic(path, await registry.metrics());
}

export async function runTestWrite(o: TestWriteOptions): Promise<TestWriteReport> {
  const signal = o.cleanups.signal;
  const registry = await newRegistry();
  const run = await openWriteRun(
    { settings: o.settings, schema: o.schema, tenant: TEST_TENANT, label: 'test', connections: o.concurrency, idleTimeoutMillis: 60_000, keep: o.keep, cleanups: o.cleanups },
    (pool, wrote) =>
      new SessionStore({
        pool,
        schema: o.schema,
        via: o.via,
        preparedStatements: o.prepare,
        connectTimeoutMs: connectTimeoutMs(o.settings),
        // Sessions of up to 10,000,000 characters: a minute each, not the library's 15 s.
        saveTimeoutMs: TEST_WRITE_SAVE_TIMEOUT_MS,
        registry,
        logger: (e) => {
          // A row of ours may exist: a save succeeded, or a connection broke with the outcome unknown.
          if (e.outcome === 'saved' || e.outcome === 'connection_error') wrote();
        },
      }),
  );
  const { store, pool, admin, rows } = run;

  const results: LengthResult[] = [];
  const details = new Map<string, { sqlstate: string | null; message: string }>();
  let race: RaceReport | undefined;
  let failure: unknown;
  try {
    for (const L of o.lengths) {
      signal.throwIfAborted();
      o.log(`tsm test-write: saving a session of ${L.toLocaleString('en-US')} character${L === 1 ? '' : 's'} (insert, update, read back)`);
      results.push(await checkLength(L, { store, admin, rows, signal }));
    }
    signal.throwIfAborted();
    o.log(`tsm test-write: race: ${o.concurrency} connections × ${o.rounds} rounds on one user id each`);
    race = await runRace(o.concurrency, o.rounds, { store, pool, admin, rows, signal, check: () => signal.throwIfAborted(), details });
  } catch (err) {
    failure = err;
  }

  const { removed, cleanupError, note } = await run.finish();
  // Interrupted: the cleanup stack has the same note and ends the run (exit 128 + n).
  signal.throwIfAborted();
  if (failure !== undefined) {
    if (failure instanceof TsmError) throw failure;
    const c = classifyError(failure);
    throw new FailError(`test-write stopped: ${c.code}${c.sqlstate ? ` (${c.sqlstate})` : ''}: ${c.message.split('\n')[0]}; ${note}`);
  }
  if (cleanupError) o.log(`tsm test-write: ${note}`);

  const raceReport = race!;
  const report: TestWriteReport = {
    database: o.settings.display,
    schema: o.schema,
    via: o.via,
    prepared_statements: store.preparedStatements,
    server_timeouts: run.timeouts,
    results,
    race: raceReport,
    ok: results.every((r) => r.ok) && raceReport.ok && cleanupError === null,
    run_id: rows.runId,
    race_details: Object.fromEntries(details),
    rows: {
      tenant: rows.tenant,
      prefix: rows.prefix,
      created_ids: rows.all().length,
      kept: o.keep,
      removed,
      cleanup_error: cleanupError,
      delete_sql: rows.deleteSql(),
    },
    metrics_file: o.metricsPath ?? null,
  };
  if (o.metricsPath) {
    try {
      await writeMetrics(o.metricsPath, registry, report);
    } catch (err) {
      throw new FailError(`--metrics-file: cannot write ${o.metricsPath}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return report;
}
