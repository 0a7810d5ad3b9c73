/**
 * Ctrl-C during tsm dedupe (design, "Production topologies"): the run stops after the batch in
 * flight, says how many rows it moved (exactly what the archive holds) and what the next command
 * does, exits 130, and the rerun finishes the work. During a scan (here one waiting behind a lock)
 * the statement is cancelled on the server instead of running on after tsm has gone.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import type { DedupeReport } from '../src/dedupe/engine.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

async function count(sql: string): Promise<number> {
  return (await db.sql(sql)).rows[0].n as number;
}

const tsmBackends = (): Promise<number> =>
  count(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm'`);

describe('tsm dedupe stopped with Ctrl-C', () => {
  it('between batches: exit 130, the rows moved so far named exactly, the rerun finishes', async () => {
    await db.sql(`${preFixSchema('stop')}
      INSERT INTO stop.telegram_sessions (tenant_id, user_id, updated_at)
      SELECT 't', 'u-' || i, timestamptz '2024-01-01' + j * interval '1 hour' FROM generate_series(1, 3000) i, generate_series(1, 2) j;`);
    let child: ChildProcess | undefined;
    const running = runTsm(['dedupe', '-d', db.url, '--schema', 'stop', '--batch-size', '1'], { onSpawn: (c) => (child = c) });
    await waitFor(
      'the archive filling up',
      async () => (await count(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'stop' AND tablename = 'telegram_sessions_duplicates_archive'`)) === 1 &&
        (await count(`SELECT count(*)::int AS n FROM stop.telegram_sessions_duplicates_archive`)) >= 100,
      { timeoutMs: 60_000 },
    );
    child!.kill('SIGINT');
    const r = await running;
    assert.equal(r.code, 130, r.stderr);
    const archived = await count(`SELECT count(*)::int AS n FROM stop.telegram_sessions_duplicates_archive`);
    assert.ok(archived < 3000, 'stopped before the end');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines[0], 'tsm dedupe: SIGINT: stopping after the batch in flight (each batch is one transaction)');
    assert.equal(
      lines[lines.length - 1],
      `tsm: dedupe interrupted by SIGINT: ${archived.toLocaleString('en-US')} rows moved before the stop are in telegram_sessions_duplicates_archive; ` +
        'each batch is one transaction, so no row is half-moved; run tsm dedupe --schema stop again',
    );
    assert.equal(await count(`SELECT count(*)::int AS n FROM stop.telegram_sessions`), 6000 - archived, 'every row in one place');

    const rerun = await runTsm(['dedupe', '-d', db.url, '--schema', 'stop', '--json']);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.equal(rerun.json<DedupeReport>().archived, 3000 - archived);
  });

  it('during a scan: the statement is cancelled on the server, exit 130 at once, nothing moved', async () => {
    await db.sql(`${preFixSchema('scan')}
      INSERT INTO scan.telegram_sessions (tenant_id, user_id) SELECT 't', 'u-' || (g % 10) FROM generate_series(1, 40) g;`);
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE scan.telegram_sessions IN ACCESS EXCLUSIVE MODE');
    try {
      let child: ChildProcess | undefined;
      const running = runTsm(['dedupe', '-d', db.url, '--schema', 'scan', '--lock-timeout', '60s'], { onSpawn: (c) => (child = c) });
      await waitFor('the scan waiting for its lock', async () =>
        (await count(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm' AND wait_event_type = 'Lock'`)) === 1,
      { timeoutMs: 30_000 });
      const stopped = Date.now();
      child!.kill('SIGINT');
      const r = await running;
      assert.equal(r.code, 130, r.stderr);
      assert.ok(Date.now() - stopped < 8000, `took ${Date.now() - stopped} ms: the scan was not cancelled`);
      assert.match(r.stderr, /\ntsm: dedupe interrupted by SIGINT: nothing was moved; run tsm dedupe --schema scan to start again\n$/);
      await waitFor('no tsm backend left', async () => (await tsmBackends()) === 0);
    } finally {
      await holder.query('ROLLBACK');
    }
    assert.equal(await count(`SELECT count(*)::int AS n FROM scan.telegram_sessions`), 40);
  });
});
