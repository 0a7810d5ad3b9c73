/**
 * Index-build progress (issue 11): while `migrate up` builds a partition's index, the engine polls
 * pg_stat_progress_create_index on a second connection and hands records to its caller's listener
 * (the CLI draws them on a TTY only). Tested on a real build held in a waiting phase by a
 * transaction's snapshot: the records name the partition, the index, the phase, what it waits for;
 * every watched statement ends with done(), and no record arrives after it; the building backend
 * is the one holding tsm's migration lock, and the samples come from a second connection. The tracker's estimate
 * of what is left, and the one-line rendering, are checked on samples.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { renderIndexProgress } from '../src/cli/commands/migrate/progress.js';
import { ProgressTracker, type IndexBuildProgress } from '../src/migrate/progress.js';
import { runMigrations } from '../src/migrate/run.js';
import { createTestDatabase } from './helpers/db.js';
import { migrate } from './helpers/migrate.js';
import { coverage, partitionedPreFix, seedPartitioned } from './helpers/partitioned.js';
import { outcome, settle, sleep, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

describe('index-build progress records', () => {
  it('a real partition build: records from a second connection (partition, index, phase, the transaction it waits for), done() after each statement', async () => {
    await db.sql(partitionedPreFix('pr', 'hash', 2));
    await seedPartitioned(db, 'pr', 3000);
    assert.equal((await migrate(db.url, ['up', '3', '--schema', 'pr'])).code, 0);

    // A snapshot older than the build: CREATE INDEX CONCURRENTLY waits for it before it can finish.
    const holder = await db.client();
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await holder.query('SELECT count(*) FROM pr.telegram_sessions_p1');
    const holderPid = (await holder.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;

    const records: IndexBuildProgress[] = [];
    const ends: number[] = [];
    const clients: pg.Client[] = [];
    const run = settle(
      runMigrations(
        {
          schema: 'pr',
          connect: async () => {
            const c = new pg.Client({ connectionString: db.url, application_name: 'tsm' });
            c.on('error', () => {});
            clients.push(c);
            await c.connect();
            return c;
          },
          log: () => {},
          progress: { update: (p) => records.push(p), done: () => ends.push(records.length) },
          progressIntervalMs: 50,
        },
        { direction: 'up', count: 1, dir: undefined, lockTimeoutMs: 5000, indexLockTimeoutMs: 120_000, lockRetries: 12, lockWaitMs: 10_000, allowModified: false },
      ),
    );
    const waiting = await waitFor(
      'a record of the build waiting for the holder',
      () => records.find((r) => r.phase.startsWith('waiting') && r.waiting_for_pid === holderPid),
      { timeoutMs: 60_000 },
    );
    assert.equal(waiting.table, 'telegram_sessions_p0');
    assert.equal(waiting.index, 'telegram_sessions_p0_user_id_unique');
    assert.equal(waiting.command, 'CREATE INDEX CONCURRENTLY');
    assert.equal(waiting.unit, 'transactions');
    assert.ok(waiting.total !== null && waiting.total >= 1 && waiting.done !== null && waiting.done < waiting.total, JSON.stringify(waiting));
    assert.equal(waiting.phase_left_ms, null, 'no estimate for a wait');
    const [builder] = (await db.sql(`SELECT application_name, query FROM pg_stat_activity WHERE pid = $1`, [waiting.pid])).rows;
    assert.equal(builder?.application_name, 'tsm', 'the pid is the migration backend');
    assert.match(String(builder?.query), /^CREATE UNIQUE INDEX CONCURRENTLY/);
    // The migration's own connection holds tsm's lock and builds (no separate lock connection);
    // the samples come from a second connection, whose last query is the progress view's.
    const others = (
      await db.sql(`SELECT query FROM pg_stat_activity WHERE application_name = 'tsm' AND datname = current_database() AND pid <> $1`, [waiting.pid])
    ).rows.map((x) => String(x.query));
    assert.ok(others.some((q) => q.includes('pg_stat_progress_create_index')), `a second connection polls: ${JSON.stringify(others)}`);
    const [lock] = (
      await db.sql(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND pid = $1`, [waiting.pid])
    ).rows;
    assert.equal(lock.n, 1, 'the building backend is the one holding the migration lock');

    const seen = records.length;
    await sleep(300);
    assert.ok(records.length > seen, 'polled again while it waits');
    const same = records.filter((r) => r.index === waiting.index);
    for (let i = 1; i < same.length; i++) assert.ok(same[i]!.elapsed_ms >= same[i - 1]!.elapsed_ms, 'elapsed grows');

    await holder.query('COMMIT');
    const result = await outcome(run);
    assert.deepEqual(result.steps.map((s) => s.name), ['0004_user_id_unique_index']);
    assert.deepEqual(await coverage(db, 'pr'), { valid: true, uncovered: [] });
    // Watched: CREATE INDEX … ON ONLY and the two CREATE INDEX CONCURRENTLY; each ended with done().
    assert.equal(ends.length, 3);
    assert.equal(ends.at(-1), records.length, 'no record after the last done()');
    for (const r of records) {
      if (r.unit !== null && r.total !== null && r.done !== null) assert.ok(r.done <= r.total, JSON.stringify(r));
      assert.ok(r.table === null || r.table.startsWith('telegram_sessions'), JSON.stringify(r));
    }
    await sleep(200);
    assert.equal(records.length, ends.at(-1), 'nothing polls after the statement ended');
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await waitFor('the polling connections closed', async () =>
      (await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tsm' AND datname = current_database()`)).rows[0].n === 0,
    );
  });

  it('the tracker: per phase, what is left at the rate so far; the line the CLI draws', () => {
    const t = new ProgressTracker(42, 0);
    const sample = (phase: string, done: number, total: number): Record<string, unknown> => ({
      command: 'CREATE INDEX CONCURRENTLY', phase, table_name: 'telegram_sessions_p3', index_name: 'telegram_sessions_p3_user_id_unique',
      blocks_total: String(total), blocks_done: String(done), tuples_total: '0', tuples_done: '0', lockers_total: '0', lockers_done: '0', current_locker_pid: '0',
      partitions_total: '0', partitions_done: '0',
    });
    const first = t.record(sample('building index: scanning table', 100, 1100) as never, 1000);
    assert.deepEqual([first.unit, first.done, first.total, first.phase_left_ms, first.elapsed_ms], ['blocks', 100, 1100, null, 1000]);
    const second = t.record(sample('building index: scanning table', 300, 1100) as never, 2000);
    assert.equal(second.phase_left_ms, 4000, '200 blocks a second, 800 to go');
    assert.equal(second.phase_elapsed_ms, 1000);
    const next = t.record(sample('index validation: scanning table', 0, 1100) as never, 2500);
    assert.deepEqual([next.phase_elapsed_ms, next.phase_left_ms], [0, null], 'a new phase starts its own clock');
    assert.equal(
      renderIndexProgress(second),
      'tsm migrate: building telegram_sessions_p3_user_id_unique on telegram_sessions_p3: building index: scanning table 300 of 1,100 blocks (27%) · 2s · ~4s left in this phase',
    );
    assert.equal(
      renderIndexProgress({ ...second, phase: 'waiting for old snapshots', unit: 'transactions', done: 0, total: 1, waiting_for_pid: 777, phase_left_ms: null, elapsed_ms: 75_000 }),
      'tsm migrate: building telegram_sessions_p3_user_id_unique on telegram_sessions_p3: waiting for old snapshots 0 of 1 transactions (waiting for pid 777) · 1m15s',
    );
  });
});
