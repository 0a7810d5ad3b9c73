/**
 * tsm dedupe through a real PgBouncer (issue 10): in transaction mode consecutive transactions run
 * on different server connections, so dedupe must keep nothing in session state. It moves every
 * duplicate, conserves every row, and leaves nothing behind on the pooled server connections (no
 * setting, no advisory lock, no open transaction); two runs at once through one pool lose and
 * double nothing and keep the newest row per user_id. Session mode works the same.
 *
 * On the code before this test, through transaction pooling with application traffic, the
 * application's queries saw tsm's `lock_timeout = 5s`, and two runs at once: the second refused
 * ("another tsm dedupe is running") naming a pid, the lock having landed on a pooled connection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import type { DedupeReport } from '../src/dedupe/engine.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema, q } from './helpers/fixtures.js';
import { requirePart, startPgBouncer, type PgBouncer } from './helpers/topology.js';

const db = await createTestDatabase(import.meta.url);
const skip = requirePart('pgbouncer');

/** `users` user_ids with 2 or 3 rows each (the newest known per user), 300 single users; a copy in <schema>.orig. */
async function seed(schema: string, users: number): Promise<number> {
  const s = q(schema);
  await db.sql(`${preFixSchema(schema)}
    INSERT INTO ${s}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, updated_at)
    SELECT 't', 'u-' || i, repeat(md5(i || '/' || j), 8), 'k', timestamptz '2024-01-01' + j * interval '1 hour' + i * interval '1 second'
      FROM generate_series(1, ${users}) i, LATERAL generate_series(1, 2 + i % 2) j;
    INSERT INTO ${s}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id)
    SELECT 't', 'single-' || g, 'x', 'k' FROM generate_series(1, 300) g;
    CREATE TABLE ${s}.orig AS SELECT * FROM ${s}.telegram_sessions;`);
  return Math.floor(users / 2) + users; // rows beyond the first per user: 1 or 2 each
}

/** Every original row in exactly one place, unchanged; each user's newest row kept; no duplicate left. */
async function assertConserved(schema: string, excess: number): Promise<void> {
  const s = q(schema);
  const r = (
    await db.sql(`SELECT
      (SELECT count(*) FROM ${s}.orig)::int AS orig,
      (SELECT count(*) FROM ${s}.telegram_sessions)::int AS in_table,
      (SELECT count(*) FROM ${s}.telegram_sessions_duplicates_archive)::int AS archived,
      (SELECT count(*) FROM ${s}.telegram_sessions t JOIN ${s}.telegram_sessions_duplicates_archive a USING (id))::int AS both,
      (SELECT count(*) FROM ${s}.orig o WHERE NOT EXISTS (SELECT 1 FROM ${s}.telegram_sessions t WHERE t.id = o.id)
                                   AND NOT EXISTS (SELECT 1 FROM ${s}.telegram_sessions_duplicates_archive a WHERE a.id = o.id))::int AS neither,
      (SELECT count(*) FROM (SELECT id FROM ${s}.telegram_sessions_duplicates_archive GROUP BY id HAVING count(*) > 1) d)::int AS doubled,
      (SELECT count(*) FROM ${s}.orig o JOIN ${s}.telegram_sessions_duplicates_archive a USING (id)
        WHERE (o.user_id, o.session_string_enc, o.updated_at) IS DISTINCT FROM (a.user_id, a.session_string_enc, a.updated_at))::int AS changed,
      (SELECT count(*) FROM (SELECT user_id FROM ${s}.telegram_sessions GROUP BY user_id HAVING count(*) > 1) d)::int AS still_duplicated,
      (SELECT count(*) FROM (SELECT DISTINCT ON (user_id) user_id, id FROM ${s}.orig ORDER BY user_id, updated_at DESC) e
         WHERE NOT EXISTS (SELECT 1 FROM ${s}.telegram_sessions t WHERE t.id = e.id))::int AS newest_not_kept`)
  ).rows[0];
  assert.deepEqual(r, {
    orig: r.orig,
    in_table: r.orig - excess,
    archived: excess,
    both: 0,
    neither: 0,
    doubled: 0,
    changed: 0,
    still_duplicated: 0,
    newest_not_kept: 0,
  });
}

/** What a server connection of the pool carries: settings tsm might have left, and whether it is in a transaction. */
async function pooledServerConnections(bouncer: PgBouncer, n: number): Promise<{ pid: number; lock_timeout: string; statement_timeout: string; idle: string }[]> {
  // n clients each inside a transaction at once: a pool of n server connections hands each one a different one.
  const clients = await Promise.all(
    Array.from({ length: n }, async () => {
      const c = new pg.Client({ connectionString: bouncer.url(db.name) });
      c.on('error', () => {});
      await c.connect();
      await c.query('BEGIN');
      return c;
    }),
  );
  try {
    const out = [];
    for (const c of clients) {
      const r = await c.query<{ pid: number; lock_timeout: string; statement_timeout: string; idle: string }>(
        `SELECT pg_backend_pid() AS pid, current_setting('lock_timeout') AS lock_timeout, current_setting('statement_timeout') AS statement_timeout,
                current_setting('idle_in_transaction_session_timeout') AS idle`,
      );
      out.push(r.rows[0]!);
    }
    return out;
  } finally {
    for (const c of clients) {
      await c.query('ROLLBACK').catch(() => {});
      await c.end().catch(() => {});
    }
  }
}

async function defaults(): Promise<{ lock_timeout: string; statement_timeout: string; idle: string }> {
  const r = await db.sql(`SELECT current_setting('lock_timeout') AS lock_timeout, current_setting('statement_timeout') AS statement_timeout,
                                 current_setting('idle_in_transaction_session_timeout') AS idle`);
  return r.rows[0] as { lock_timeout: string; statement_timeout: string; idle: string };
}

/** Clients of the pool running one-statement transactions in a loop, noting any lock/statement timeout that is not the server's default. */
async function appTraffic(bouncer: PgBouncer, n: number, want: { lock_timeout: string; statement_timeout: string; idle: string }) {
  let stop = false;
  const seen = { queries: 0, odd: [] as string[] };
  const clients = await Promise.all(
    Array.from({ length: n }, async () => {
      const c = new pg.Client({ connectionString: bouncer.url(db.name) });
      c.on('error', () => {});
      await c.connect();
      return c;
    }),
  );
  const loops = clients.map(async (c) => {
    while (!stop) {
      const r = await c.query<{ lock_timeout: string; statement_timeout: string; idle: string }>(
        `SELECT current_setting('lock_timeout') AS lock_timeout, current_setting('statement_timeout') AS statement_timeout,
                current_setting('idle_in_transaction_session_timeout') AS idle`,
      );
      seen.queries++;
      const got = r.rows[0]!;
      if (got.lock_timeout !== want.lock_timeout || got.statement_timeout !== want.statement_timeout || got.idle !== want.idle) {
        if (seen.odd.length < 5) seen.odd.push(JSON.stringify(got));
      }
    }
  });
  const settled = Promise.allSettled(loops);
  return {
    async stop() {
      stop = true;
      const results = await settled;
      for (const c of clients) await c.end().catch(() => {});
      const failed = results.filter((x) => x.status === 'rejected');
      assert.deepEqual(failed, [], 'the application queries never failed');
      return seen;
    },
  };
}

async function advisoryLocksHere(): Promise<number> {
  return (await db.sql(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows[0].n;
}

describe('tsm dedupe through PgBouncer', { skip }, () => {
  for (const mode of ['transaction', 'session'] as const) {
    it(`${mode} mode: every duplicate moved, every row conserved, nothing left on the pooled server connections`, async () => {
      const schema = `pool_${mode}`;
      const excess = await seed(schema, 600);
      const bouncer = await startPgBouncer({ mode, settings: { default_pool_size: '2' } });
      const want = await defaults();
      // Application traffic on the same pool, so that in transaction mode tsm's statements land on
      // whichever server connection is free; the application must never see a setting of tsm's.
      // (Session mode gives each client a server connection of its own: one application client besides tsm.)
      const app = await appTraffic(bouncer, mode === 'transaction' ? 3 : 1, want);
      const r = await runTsm(['dedupe', '-d', bouncer.url(db.name), '--schema', schema, '--batch-size', '40', '--json']);
      const seen = await app.stop();
      assert.ok(seen.queries > 50, `only ${seen.queries} application queries ran alongside`);
      assert.deepEqual(seen.odd, [], 'the application saw settings tsm made');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.equal(r.stderr, '', 'no progress lines without a terminal');
      const j = r.json<DedupeReport>();
      assert.equal(j.archived, excess);
      assert.equal(j.verification?.ok, true);
      assert.equal(j.conservation?.holds, true);
      assert.ok(j.batches >= 600 / 40, `${j.batches} batches`);
      await assertConserved(schema, excess);

      const conns = await pooledServerConnections(bouncer, 2);
      for (const c of conns) assert.deepEqual({ lock_timeout: c.lock_timeout, statement_timeout: c.statement_timeout, idle: c.idle }, want, `server connection ${c.pid}`);
      assert.equal(await advisoryLocksHere(), 0, 'no advisory lock left on any connection');
      const open = (await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`)).rows[0].n;
      assert.equal(open, 0, 'no transaction left open');
      await bouncer.stop();
    });
  }

  it('two dedupes at once through one transaction-mode pool: nothing lost or doubled, the newest row kept', async (t) => {
    const schema = 'pool_two';
    const excess = await seed(schema, 1500);
    const bouncer = await startPgBouncer({ mode: 'transaction', settings: { default_pool_size: '4' } });
    const args = ['dedupe', '-d', bouncer.url(db.name), '--schema', schema, '--batch-size', '5', '--json'];
    const started = Date.now();
    const [a, b] = await Promise.all([runTsm(args), runTsm(args)]);
    assert.equal(a.code, 0, a.stderr + a.stdout);
    assert.equal(b.code, 0, b.stderr + b.stdout);
    const ja = a.json<DedupeReport>();
    const jb = b.json<DedupeReport>();
    t.diagnostic(`run A moved ${ja.archived} in ${ja.batches} batches, run B ${jb.archived} in ${jb.batches}; ${Date.now() - started} ms in all`);
    assert.equal(ja.archived + jb.archived, excess, 'together they moved each excess row once');
    assert.equal(ja.verification?.ok, true);
    assert.equal(jb.verification?.ok, true);
    // (How the work splits depends on timing: both walk the table in the same order, so the one
    // behind often finds its planned rows already moved, and skips them.)
    for (const j of [ja, jb]) {
      // Rows that left the table without this run moving them are exactly the rows the other run put in the archive meanwhile.
      const c = j.conservation!;
      assert.equal(c.difference + (c.archive_grew_by - c.rows_archived), 0, JSON.stringify(c));
    }
    await assertConserved(schema, excess);
    const human = await runTsm(['dedupe', '-d', bouncer.url(db.name), '--schema', schema]);
    assert.equal(human.code, 0, human.stderr);
    assert.equal(await advisoryLocksHere(), 0);
    await bouncer.stop();
  });
});
