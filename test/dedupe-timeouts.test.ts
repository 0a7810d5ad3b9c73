/**
 * tsm dedupe under role-level timeouts (issue 10) and with its own lock timeout:
 * - statement_timeout = '200ms' on the role, on a table big enough that one scan of it takes
 *   longer (checked first, as that role): dedupe still finishes, because its transactions set
 *   what their work needs with SET LOCAL;
 * - idle_in_transaction_session_timeout = '100ms' on the role and a client that takes 150 ms
 *   before each statement (a loaded machine, made deterministic): dedupe finishes, because the
 *   setting is raised in the same message as BEGIN;
 * - idle_session_timeout ending the session while the client is idle: the error is the
 *   server's own (57P05), named idle_session_timeout, not "Client has encountered a connection error";
 * - a table held in SHARE mode (a plain CREATE INDEX) past --lock-timeout: one line naming
 *   lock_timeout and the holder's pid, "nothing was moved".
 *
 * On the code before this test: the first two fail (statement timeout; "Client has encountered a
 * connection error" with no word of the timeout).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { dedupe, type DedupeReport } from '../src/dedupe/engine.js';
import { sqlstateOf, stopReason } from '../src/dedupe/session.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase, type TestRole } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { settle, sleep, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

/** A schema with `users` duplicated user_ids (2 rows each) and a role that owns its work there, with role settings. */
async function setup(schema: string, users: number, settings: Record<string, string>): Promise<TestRole> {
  await db.sql(`${preFixSchema(schema)}
    INSERT INTO ${schema}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, updated_at)
    SELECT 't', 'u-' || i, 'session-' || i || '-' || j, 'k', timestamptz '2024-01-01' + j * interval '1 day'
      FROM generate_series(1, ${users}) i, generate_series(1, 2) j;`);
  const role = await db.role(`tsm_${schema}`);
  const sets = Object.entries(settings).map(([k, v]) => `ALTER ROLE "${role.name}" SET ${k} = '${v}';`).join('\n');
  await db.sql(`GRANT ALL ON SCHEMA ${schema} TO "${role.name}"; GRANT ALL ON ALL TABLES IN SCHEMA ${schema} TO "${role.name}"; ${sets}`);
  return role;
}

/** A pg client that waits `ms` before sending each statement: a slow client, without depending on the machine's load. */
function slowClient(c: pg.Client, ms: number): pg.Client {
  return new Proxy(c, {
    get(target, prop, receiver) {
      if (prop === 'query') {
        return async (...args: unknown[]) => {
          await sleep(ms);
          return (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
        };
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function connectAs(role: TestRole): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: role.url });
  c.on('error', () => {});
  await c.connect();
  return c;
}

describe('tsm dedupe under role-level timeouts', () => {
  it("statement_timeout = '200ms' on the role, one scan of the table takes longer: dedupe finishes", async (t) => {
    const role = await setup('st', 2000, { statement_timeout: '200ms' });
    // Grow the table until a duplicate count (what dedupe runs) takes longer than 200 ms as that role.
    const control = async (): Promise<string | null> => {
      const c = await connectAs(role);
      try {
        await c.query(`SELECT count(*) FROM (SELECT user_id FROM st.telegram_sessions WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) d`);
        return null;
      } catch (err) {
        return sqlstateOf(err);
      } finally {
        await c.end();
      }
    };
    let rows = 4000;
    let bites: string | null = null;
    for (const add of [400_000, 400_000, 800_000, 1_600_000]) {
      await db.sql(`INSERT INTO st.telegram_sessions (tenant_id, user_id, session_string_enc, key_id)
                    SELECT 't', 's-' || g, 'x', 'k' FROM generate_series(${rows + 1}, ${rows + add}) g`);
      rows += add;
      bites = await control();
      if (bites !== null) break;
    }
    t.diagnostic(`${rows.toLocaleString('en-US')} rows: the role's statement_timeout cancels a duplicate count (${bites})`);
    assert.equal(bites, '57014', `even ${rows} rows are counted within 200 ms: the table is too small to show the bug`);

    const r = await runTsm(['dedupe', '-d', role.url, '--schema', 'st', '--json'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(0, 500));
    const j = r.json<DedupeReport>();
    assert.equal(j.archived, 2000);
    assert.equal(j.verification?.ok, true);
    assert.equal(j.after?.rows, rows - 2000);
  });

  it("idle_in_transaction_session_timeout = '100ms' on the role and a slow client: dedupe finishes", async () => {
    const role = await setup('itx', 300, { idle_in_transaction_session_timeout: '100ms' });
    // Control: the same slow client in a plain transaction is thrown out by the server.
    const plain = await connectAs(role);
    const slow = slowClient(plain, 150);
    await slow.query('BEGIN');
    const failed = await settle(slow.query('SELECT 1'));
    assert.equal(failed.ok, false, 'a transaction idle for 150 ms survived: the role setting does not bite');
    await plain.end().catch(() => {});

    const c = await connectAs(role);
    try {
      const report = await dedupe(slowClient(c, 150), { schema: 'itx', keep: 'newest', dryRun: false, batchSize: 100 });
      assert.equal(report.ok, true);
      assert.equal(report.archived, 300);
      assert.equal(report.batches, 3);
      assert.equal(report.verification?.ok, true);
      // And the client comes back with the role's own setting.
      assert.equal((await c.query(`SELECT current_setting('idle_in_transaction_session_timeout') AS v`)).rows[0].v, '100ms');
    } finally {
      await c.end();
    }
  });

  it('idle_session_timeout ends the session while dedupe is idle: the error is the server\'s, naming the timeout', async () => {
    const role = await setup('idle', 50, { idle_session_timeout: '100ms' });
    const c = await connectAs(role);
    const err = await dedupe(slowClient(c, 300), { schema: 'idle', keep: 'newest', dryRun: false }).then(
      () => null,
      (e: unknown) => e,
    );
    await c.end().catch(() => {});
    assert.ok(err !== null, 'dedupe survived a session the server ended');
    assert.equal(sqlstateOf(err), '57P05', String(err));
    const why = stopReason(err);
    assert.equal(why.code, 'idle_session_timeout');
    assert.match(why.message, /idle_session_timeout/);
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM idle.telegram_sessions`)).rows[0].n, 100, 'nothing moved');
  });
});

describe('tsm dedupe and its own lock timeout', () => {
  it('a table held in SHARE mode past --lock-timeout: one line naming lock_timeout and the holder, nothing moved', async () => {
    await setup('held', 40, {});
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE held.telegram_sessions IN SHARE MODE'); // what a plain CREATE INDEX takes
    const pid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    try {
      const started = Date.now();
      const r = await runTsm(['dedupe', '-d', db.url, '--schema', 'held', '--lock-timeout', '100ms']);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`^tsm: dedupe stopped: lock_timeout \\(55P03\\): 6 times no lock on "telegram_sessions" within lock_timeout 100 ms \\(held by pid ${pid} \\(ShareLock on telegram_sessions\\)\\); nothing was moved; run tsm dedupe --schema held again when it is done\\n$`),
      );
      assert.ok(Date.now() - started < 30_000, 'gave up within seconds');
      await waitFor('no backend of tsm waits any more', async () =>
        (await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm'`)).rows[0].n === 0,
      );
    } finally {
      await holder.query('ROLLBACK');
    }
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM held.telegram_sessions`)).rows[0].n, 80);
    // With --json: the error document names the code, and says nothing was archived.
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE held.telegram_sessions IN SHARE MODE');
    try {
      const j = await runTsm(['dedupe', '-d', db.url, '--schema', 'held', '--lock-timeout', '50ms', '--json']);
      assert.equal(j.code, 1);
      assert.equal(j.json().error.code, 'lock_timeout');
      assert.equal(j.json().archived, 0);
    } finally {
      await holder.query('ROLLBACK');
    }
    const again = await runTsm(['dedupe', '-d', db.url, '--schema', 'held', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json<DedupeReport>().archived, 40);
  });
});
