/**
 * Ctrl-C during `tsm migrate up` (issue 10: it printed nothing and left the index build running on
 * the server). Now the running statement is cancelled on the server, the last line says what state
 * is left and what the next command does, and the exit code is 130.
 *
 * The build is held in place for real: a REPEATABLE READ transaction keeps an old snapshot, so
 * CREATE INDEX CONCURRENTLY waits in its last phase (the index exists, INVALID) for as long as
 * that transaction lasts.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import { lockKey } from '../src/migrate/lock.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, advisoryLocks, history, indexesOf, lastLine, migrate, seed, stderrWatcher } from './helpers/migrate.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

/** tsm's backends in this database that are running a statement (not idle). */
async function activeTsm(): Promise<{ pid: number; query: string }[]> {
  const r = await db.sql(
    `SELECT pid, left(query, 60) AS query FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'tsm' AND state <> 'idle' AND pid <> pg_backend_pid()`,
  );
  return r.rows;
}

function spawnUp(args: string[]): { run: ReturnType<typeof migrate>; child: () => ChildProcess; watcher: ReturnType<typeof stderrWatcher> } {
  const watcher = stderrWatcher();
  let child: ChildProcess | undefined;
  const run = migrate(db.url, args, {
    onSpawn: (c) => {
      child = c;
      watcher.onSpawn?.(c);
    },
    timeoutMs: 60_000,
  });
  return { run, watcher, child: () => child! };
}

describe('Ctrl-C during tsm migrate up', () => {
  it('in the index build: the build is cancelled on the server, the INVALID index is named with what the next up does, exit 130', async () => {
    await db.sql(preFixSchema('ctrlc'));
    await seed(db, 'ctrlc', 2000);
    const snapshot = await db.client();
    await snapshot.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await snapshot.query('SELECT count(*) FROM pg_class'); // an old snapshot the build must wait for
    const { run, child } = spawnUp(['up', '--schema', 'ctrlc', '--lock-timeout', '60s']);
    const building = await waitFor('tsm running CREATE INDEX CONCURRENTLY', async () => (await activeTsm()).find((a) => /CREATE UNIQUE INDEX CONCURRENTLY/.test(a.query)), {
      timeoutMs: 30_000,
    });
    child().kill('SIGINT');
    const r = await run;
    assert.equal(r.code, 130, r.stderr);
    assert.deepEqual(await activeTsm(), [], `no tsm statement still running on the server (the build was pid ${building.pid})`);
    const line = lastLine(r.stderr);
    assert.match(line, /^tsm: migrate up interrupted by SIGINT: /);
    assert.match(line, /0004_user_id_unique_index cancelled on the server/);
    assert.match(line, /applied before it: 0001_create_table, 0002_widen_session_columns, 0003_diagnostic_columns/);
    assert.match(line, /INVALID index left behind: telegram_sessions_user_id_unique \(the next `tsm migrate up --schema ctrlc` drops and rebuilds it\)/);
    assert.deepEqual(await history(db, 'ctrlc'), SHIPPED.slice(0, 3));
    const left = (await indexesOf(db, 'ctrlc')).find((i) => i.name === 'telegram_sessions_user_id_unique');
    assert.equal(left?.valid, false);
    assert.deepEqual(await advisoryLocks(db), [], 'the migration lock is released');

    await snapshot.query('COMMIT');
    const again = await migrate(db.url, ['up', '--schema', 'ctrlc']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /INVALID .*dropping it, then rebuilding/);
    assert.equal((await indexesOf(db, 'ctrlc')).find((i) => i.name === 'telegram_sessions_user_id_unique')?.valid, true);
    assert.deepEqual(await history(db, 'ctrlc'), SHIPPED);
  });

  it('in a transactional migration waiting for its lock: rolled back, nothing of it left, exit 130', async () => {
    await db.sql(preFixSchema('ctrlc_tx'));
    const blocker = await db.client();
    await blocker.query('BEGIN; LOCK TABLE ctrlc_tx.telegram_sessions IN ACCESS SHARE MODE');
    const { run, child } = spawnUp(['up', '--schema', 'ctrlc_tx', '--lock-timeout', '60s']);
    await waitFor('tsm waiting for its ALTER TABLE lock', async () => (await activeTsm()).find((a) => /ALTER TABLE/.test(a.query)), { timeoutMs: 30_000 });
    child().kill('SIGINT');
    const r = await run;
    assert.equal(r.code, 130, r.stderr);
    assert.deepEqual(await activeTsm(), []);
    const line = lastLine(r.stderr);
    assert.match(line, /^tsm: migrate up interrupted by SIGINT: 0003_diagnostic_columns cancelled on the server and rolled back \(nothing of it is left\)/);
    assert.match(line, /applied before it: 0001_create_table, 0002_widen_session_columns/);
    assert.match(line, /the next `tsm migrate up --schema ctrlc_tx` applies the rest/);
    assert.deepEqual(await history(db, 'ctrlc_tx'), SHIPPED.slice(0, 2));
    await blocker.query('ROLLBACK');
    assert.deepEqual(await advisoryLocks(db), []);
  });

  it('while waiting for another tsm migrate: stops at once, nothing applied, exit 130', async () => {
    await db.sql(preFixSchema('ctrlc_wait'));
    const holder = await db.client();
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [lockKey('ctrlc_wait')]);
    const { run, child, watcher } = spawnUp(['up', '--schema', 'ctrlc_wait']);
    await watcher.until((s) => /another tsm migrate holds the lock/.test(s));
    const sent = Date.now();
    child().kill('SIGINT');
    const r = await run;
    assert.equal(r.code, 130, r.stderr);
    assert.ok(Date.now() - sent < 5000, 'stopped at once');
    assert.match(lastLine(r.stderr), /^tsm: migrate up interrupted by SIGINT: .*nothing was applied/);
    assert.deepEqual(await history(db, 'ctrlc_wait'), []);
    await holder.query('SELECT pg_advisory_unlock_all()');
  });
});
