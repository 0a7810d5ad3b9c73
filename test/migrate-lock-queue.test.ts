/**
 * The lock queue (issue 10, DESIGN "The schema tsm converges to"): an ALTER TABLE waiting for its
 * ACCESS EXCLUSIVE lock makes every later writer of the table wait behind it. With an idle
 * transaction holding ACCESS SHARE, the old default (`--lock-timeout 5s`) stalled every writer for
 * up to 5 s at a time. With the defaults no application write may wait more than about 1 s
 * because of tsm, and the migration still gets through once the blocker ends.
 *
 * The bound asserted is 2 s (twice the 1 s target: the machine is shared); bench/lock-queue
 * measures the real numbers against a plain ALTER TABLE.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, migrate, seed, startWriters } from './helpers/migrate.js';
import { settle, sleep } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

const BLOCKER_MS = 6000;
const STALL_BOUND_MS = 2000;

describe('tsm migrate up with the defaults behind an idle transaction', () => {
  it(`no write waits more than ${STALL_BOUND_MS} ms; the migration gets through once the blocker ends`, async () => {
    await db.sql(preFixSchema('queue'));
    await seed(db, 'queue', 1000);
    const writers = await startWriters(db.url, 'queue', 8, { pauseMs: 5 });
    const blocker = await db.client();
    await blocker.query('BEGIN');
    await blocker.query('SELECT count(*) FROM queue.telegram_sessions'); // ACCESS SHARE until the end of the transaction
    const released = settle(sleep(BLOCKER_MS).then(() => blocker.query('COMMIT')));
    const started = Date.now();
    const r = await migrate(db.url, ['up', '--schema', 'queue', '--json'], { timeoutMs: 120_000 });
    const elapsed = Date.now() - started;
    const stats = await writers.stop();
    assert.equal((await released).ok, true);
    assert.ok(stats.maxMs < STALL_BOUND_MS, `longest write ${stats.maxMs} ms (at ${stats.maxAtMs} ms), bound ${STALL_BOUND_MS} ms`);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await history(db, 'queue'), SHIPPED);
    const alter = r.json().steps.find((s: { name: string }) => s.name === '0003_diagnostic_columns');
    assert.ok(alter.attempts >= 2, `0003 waited for the blocker (attempts: ${alter.attempts})`);
    assert.ok(elapsed >= BLOCKER_MS - 500, `up finished after the blocker (${elapsed} ms)`);
    assert.ok(elapsed < BLOCKER_MS + 15_000, `up got through soon after the blocker ended (${elapsed} ms)`);
    assert.deepEqual(stats.errors, []);
    assert.ok(stats.writes > 100, `the writers kept writing (${stats.writes} writes)`);
  });
});
