/**
 * `tsm test-write`, the engine: the per-length checks, then the race, all through SessionStore,
 * then the removal of every test row (also after a failure and on SIGINT/SIGTERM), then the
 * optional Prometheus textfile. Returns the full report; the command maps it to JSON and text.
 */
import pg from 'pg';
import type { Client, Pool } from 'pg';
import type { Registry } from 'prom-client';
import type { ConnectionSettings } from '../config.js';
import { classifyError } from '../db/classify.js';
import { connect } from '../db/connect.js';
import { FailError, TsmError } from '../errors.js';
import { writeFileAtomic } from './atomic-file.js';
import { guardInterrupts } from './interrupt.js';
import { checkLength, type LengthResult } from './lengths.js';
import { loadPromClient, newRegistry } from './metrics.js';
import { runRace, type RaceReport } from './race.js';
import type { Via } from './sql.js';
import { SessionStore } from './store.js';
import { TestRows } from './test-rows.js';

export const TEST_TENANT = 'tsm-test';

export interface TestWriteOptions {
  settings: ConnectionSettings;
  schema: string;
  lengths: number[];
  concurrency: number;
  rounds: number;
  via: Via;
  keep: boolean;
  /** Absolute path of the Prometheus textfile, if any. */
  metricsPath?: string;
  log(line: string): void;
}

export interface TestWriteReport {
  database: string;
  schema: string;
  via: Via;
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

type Pids = Set<number>;

function trackPids(pool: Pool): Pids {
  const pids: Pids = new Set();
  pool.on('connect', (c) => {
    const pid = (c as unknown as { processID: number | null }).processID;
    if (pid) pids.add(pid);
  });
  return pids;
}

/** Last resort (cleanup too slow, or a second Ctrl-C): cancel our statements, delete our rows. */
async function emergencyCleanup(settings: ConnectionSettings, pids: Pids, rows: TestRows, keep: boolean): Promise<void> {
  const c = new pg.Client({ ...settings.pg, connectionTimeoutMillis: 3000 });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query(`SET statement_timeout = '5s'`);
    if (pids.size > 0) await c.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [[...pids]]);
    if (!keep) await rows.remove(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** No table or no schema: then no row of ours can exist either. */
export const NOTHING_THERE = new Set(['42P01', '3F000']);

async function removeRows(admin: Client, settings: ConnectionSettings, rows: TestRows): Promise<number> {
  if (rows.all().length === 0) return 0;
  try {
    return await rows.remove(admin);
  } catch (err) {
    const c = classifyError(err);
    if (c.sqlstate !== null && NOTHING_THERE.has(c.sqlstate)) return 0;
    if (c.code !== 'connection_error') throw err;
    // The admin connection broke: one fresh try.
    const fresh = await connect(settings);
    try {
      return await rows.remove(fresh);
    } finally {
      await fresh.end().catch(() => {});
    }
  }
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
  const admin = await connect(o.settings); // ConnectError (exit 3) when the server cannot be reached
  admin.on('error', () => {});
  const rows = new TestRows(TEST_TENANT, o.schema);
  const pool = new pg.Pool({ ...o.settings.pg, max: o.concurrency, idleTimeoutMillis: 60_000 });
  pool.on('error', () => {});
  const pids = trackPids(pool);
  const registry = await newRegistry();
  // Whether a row of ours may exist: a save succeeded, or a connection broke with the outcome unknown.
  let wrote = false;
  const store = new SessionStore({
    pool,
    schema: o.schema,
    via: o.via,
    registry,
    logger: (e) => {
      if (e.outcome === 'saved' || e.outcome === 'connection_error') wrote = true;
    },
  });
  const guard = guardInterrupts({
    name: 'test-write',
    log: o.log,
    emergency: () =>
      emergencyCleanup(o.settings, pids, rows, o.keep).catch((err: unknown) => {
        const c = classifyError(err);
        o.log(`tsm test-write: could not remove the test rows (${c.code}: ${c.message.split('\n')[0]}); remove them with: ${rows.deleteSql()}`);
      }),
  });

  const results: LengthResult[] = [];
  const details = new Map<string, { sqlstate: string | null; message: string }>();
  let race: RaceReport | undefined;
  let failure: unknown;
  try {
    for (const L of o.lengths) {
      guard.check();
      o.log(`tsm test-write: saving a session of ${L.toLocaleString('en-US')} character${L === 1 ? '' : 's'} (insert, update, read back)`);
      results.push(await checkLength(L, { store, admin, rows, signal: guard.signal }));
    }
    guard.check();
    o.log(`tsm test-write: race: ${o.concurrency} connections × ${o.rounds} rounds on one user id each`);
    race = await runRace(o.concurrency, o.rounds, { store, pool, admin, rows, signal: guard.signal, check: () => guard.check(), details });
  } catch (err) {
    failure = err;
  }

  // Cleanup: after the writes in flight have finished (pool.end waits for them).
  await store.close();
  await pool.end().catch(() => {});
  let removed: number | null = null;
  let cleanupError: string | null = null;
  if (!o.keep) {
    try {
      removed = wrote ? await removeRows(admin, o.settings, rows) : 0;
    } catch (err) {
      const c = classifyError(err);
      cleanupError = `${c.code}${c.sqlstate ? ` (${c.sqlstate})` : ''}: ${c.message.split('\n')[0]}`;
    }
  }
  await admin.end().catch(() => {});
  guard.dispose();

  const cleanupNote = o.keep
    ? `test rows kept (${rows.all().length} user ids ${rows.prefix}*)`
    : cleanupError
      ? `could not remove the test rows (${cleanupError}); remove them with: ${rows.deleteSql()}`
      : 'test rows removed';
  if (guard.received() !== null) throw guard.interrupted(cleanupNote);
  if (failure !== undefined) {
    if (failure instanceof TsmError) throw failure;
    const c = classifyError(failure);
    throw new FailError(`test-write stopped: ${c.code}${c.sqlstate ? ` (${c.sqlstate})` : ''}: ${c.message.split('\n')[0]}; ${cleanupNote}`);
  }
  if (cleanupError) o.log(`tsm test-write: ${cleanupNote}`);

  const raceReport = race!;
  const report: TestWriteReport = {
    database: o.settings.display,
    schema: o.schema,
    via: o.via,
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
