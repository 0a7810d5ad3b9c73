/**
 * Role-level timeouts and test-write (issue 10). The writes under test see the role's settings,
 * as the application does, and a failure names the timeout that fired and where it was set (on
 * main, under lock_timeout = '1ms' the remedy blamed "a long transaction"). tsm's own statements
 * (read-back, counts, removal of the test rows) override the role's timeouts inside their own
 * transactions, so a role's short statement_timeout does not leave test rows behind.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase, type TestRole } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';
import { outcome, settle, sleep, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));

async function tester(prefix: string, settings: Record<string, string>): Promise<TestRole> {
  const role = await db.role(prefix);
  await db.sql(`GRANT SELECT, INSERT, UPDATE, DELETE ON telegram_sessions TO "${role.name}"`);
  for (const [k, v] of Object.entries(settings)) await db.sql(`ALTER ROLE "${role.name}" SET ${k} = '${v}'`);
  return role;
}

const testRows = async (): Promise<number> => (await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions WHERE tenant_id = 'tsm-test'`)).rows[0].n;

/** Runs test-write while the test holds SHARE on the table (every write waits). */
async function whileTableLocked(args: string[]): Promise<Awaited<ReturnType<typeof runTsm>>> {
  const holder = await db.client();
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE telegram_sessions IN SHARE MODE');
  try {
    return await runTsm(args);
  } finally {
    await holder.query('ROLLBACK');
  }
}

describe('the timeout that fired is named, with where it was set', () => {
  it("lock_timeout = '1ms' on the role: lock_timeout, the role's setting and how to reset it (not 'a long transaction')", async () => {
    const role = await tester('tsm_tw_lock', { lock_timeout: '1ms' });
    const r = await whileTableLocked(['test-write', '-d', role.url, '--lengths', '68', '--rounds', '1', '--concurrency', '2']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /lock_timeout: length 68: 55P03: .* \(lock_timeout = 1ms, set for the role \(ALTER ROLE … SET\)\)\n/);
    assert.match(r.stdout, /remedy: lock_timeout = 1ms, set for the role .*concurrent saves of one user always wait for each other's row lock; raise it for the application's role: ALTER ROLE CURRENT_USER RESET lock_timeout;/);
    assert.doesNotMatch(r.stdout, /a long transaction holds/);
    const j = (await whileTableLocked(['test-write', '--json', '-d', role.url, '--lengths', '68', '--rounds', '1', '--concurrency', '2'])).json();
    assert.deepEqual(j.server_timeouts.lock_timeout, { value: '1ms', source: 'user' });
    assert.match(j.remedies.lock_timeout, /ALTER ROLE CURRENT_USER RESET lock_timeout/);
    assert.equal(await testRows(), 0);
  });

  it("statement_timeout = '100ms' on the role: statement_timeout (57014), named with its source", async () => {
    const role = await tester('tsm_tw_stmt', { statement_timeout: '100ms' });
    const r = await whileTableLocked(['test-write', '-d', role.url, '--lengths', '68', '--rounds', '1', '--concurrency', '2']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /statement_timeout: length 68: 57014: .* \(statement_timeout = 100ms, set for the role \(ALTER ROLE … SET\)\)\n/);
    assert.match(r.stdout, /remedy: statement_timeout = 100ms, set for the role .*a save that takes longer is cancelled/);
    assert.equal(await testRows(), 0);
  });

  it('a long lock_timeout that fires: the blocking transaction is the suspect', async () => {
    const role = await tester('tsm_tw_long', { lock_timeout: '1s' });
    const r = await whileTableLocked(['test-write', '-d', role.url, '--lengths', '68', '--rounds', '1', '--concurrency', '1']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /remedy: lock_timeout = 1s, set for the role .* fired: a transaction held a lock on "public"\."telegram_sessions" longer than that: SELECT pid/);
  });
});

describe("tsm's own statements are not cut short by the role's timeouts", () => {
  it("statement_timeout = '300ms' on the role, removal blocked for longer by a row lock: the rows are still removed, exit 0", async () => {
    const role = await tester('tsm_tw_own', { statement_timeout: '300ms', idle_in_transaction_session_timeout: '50ms' });
    const running = settle(runTsm(['test-write', '-d', role.url, '--lengths', '68,268,800,4096,65536', '--rounds', '10']));
    // Once the second length's row exists, the first length's check is over: lock its row.
    await waitFor('the second test row', async () => (await db.sql(`SELECT 1 FROM telegram_sessions WHERE tenant_id = 'tsm-test' AND user_id LIKE '%:2'`)).rowCount === 1, {
      timeoutMs: 60_000,
    });
    const holder = await db.client();
    await holder.query('BEGIN');
    const locked = await holder.query(`SELECT id FROM telegram_sessions WHERE tenant_id = 'tsm-test' AND user_id LIKE '%:1' FOR UPDATE`);
    assert.equal(locked.rowCount, 1);
    await waitFor(
      "test-write's removal waiting on the row lock",
      async () =>
        (await db.sql(`SELECT 1 FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM%'`, [role.name])).rowCount! > 0,
      { timeoutMs: 60_000 },
    );
    await sleep(700); // longer than the role's 300 ms statement_timeout
    await holder.query('COMMIT');
    const r = await outcome(running);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /test rows removed \(\d+ rows, tenant tsm-test\)/);
    assert.equal(await testRows(), 0);
  });
});
