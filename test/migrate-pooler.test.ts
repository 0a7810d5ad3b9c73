/**
 * tsm migrate through PgBouncer 1.18 (issue 10), for real.
 *
 * Transaction mode: consecutive statements may run on different server connections, so tsm's
 * session lock and session settings mean nothing there. The run (`migrate up --schema
 * app2` with application traffic on the pool) reported "5 migrations applied" while the index and
 * function went to `public`. Now `up` and `down` refuse before changing anything (exit 2, one
 * line), in both schemas, every time; `status` and `--dry-run` (read-only) work.
 *
 * Session mode: works, and nothing tsm sets outlives its use on the pooled server connection. The
 * pool runs without a reset query (`server_reset_query =` empty: PgBouncer's DISCARD ALL would
 * otherwise hide a leak) and the database has its own timeouts, so every server connection is
 * read afterwards: its SHOW values are the database's, and no advisory lock is left.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import {
  SHIPPED,
  advisoryLocks,
  catalogSnapshot,
  history,
  lastLine,
  migrate,
  qi,
  recordedChecksums,
  seed,
  shippedChecksum,
  startWriters,
  upAdds,
  userObjects,
  objectDiff,
} from './helpers/migrate.js';
import { requirePart, startPgBouncer, type BouncerOptions, type PgBouncer } from './helpers/topology.js';

const skip = requirePart('pgbouncer');
const db = await createTestDatabase(import.meta.url);

/** A pool for one test, stopped at its end (its server connections close, whatever they hold). */
async function withPool(opts: BouncerOptions, fn: (pool: PgBouncer) => Promise<void>): Promise<void> {
  const pool = await startPgBouncer(opts);
  try {
    await fn(pool);
  } finally {
    await pool.stop();
  }
}

const POOLER_LINE = /^tsm: .*looks like a transaction-mode pooler; use a direct or session-mode URL for migrations$/;

/** The settings of every server connection the pool holds for this database, read through the pool. */
async function pooledServerSettings(pool: PgBouncer): Promise<{ pid: number; lock_timeout: string; statement_timeout: string; idle: string; advisory: number }[]> {
  const servers = (await pool.admin_sql('SHOW SERVERS')).rows.filter((s: { database: string }) => s.database === db.name);
  assert.ok(servers.length > 0, 'the pool holds server connections for the database');
  const remote = new Set(servers.map((s: { remote_pid: string | number }) => Number(s.remote_pid)));
  // Session mode: each client holds its own server connection, so as many clients at once as
  // there are server connections reach every one of them (idle ones are used before new ones).
  const clients = await Promise.all(
    servers.map(async () => {
      const c = new pg.Client({ connectionString: pool.url(db.name) });
      c.on('error', () => {});
      await c.connect();
      return c;
    }),
  );
  try {
    const rows = await Promise.all(
      clients.map(async (c) => {
        const r = await c.query(
          `SELECT pg_backend_pid() AS pid, current_setting('lock_timeout') AS lock_timeout, current_setting('statement_timeout') AS statement_timeout,
                  current_setting('idle_in_transaction_session_timeout') AS idle,
                  (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory`,
        );
        return r.rows[0];
      }),
    );
    assert.deepEqual(new Set(rows.map((r) => r.pid)), remote, 'every pooled server connection was read');
    return rows;
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

describe('tsm migrate through a transaction-mode PgBouncer', { skip }, () => {
  it('the issue: up --schema app2 with application traffic → exit 2 every time, nothing changed in public or app2', async () => {
    await db.sql(preFixSchema('public'));
    await db.sql(preFixSchema('app2'));
    await seed(db, 'public', 1000);
    await seed(db, 'app2', 1000);
    const before = await catalogSnapshot(db);
    await withPool({ mode: 'transaction' }, async (pool) => {
      const traffic = await startWriters(pool.url(db.name), 'public', 4, { pauseMs: 2 });
      try {
        for (let run = 1; run <= 3; run++) {
          const r = await migrate(pool.url(db.name), ['up', '--schema', 'app2']);
          assert.equal(r.code, 2, `run ${run}: ${r.stdout}${r.stderr}`);
          assert.match(lastLine(r.stderr), POOLER_LINE, `run ${run}`);
          assert.equal(r.stdout, '');
        }
        const down = await migrate(pool.url(db.name), ['down', '--schema', 'app2']);
        assert.equal(down.code, 2, down.stderr);
        assert.match(lastLine(down.stderr), POOLER_LINE);
      } finally {
        const seen = await traffic.stop();
        assert.ok(seen.writes > 0, 'the application wrote through the pool meanwhile');
        assert.deepEqual(seen.errors, []);
      }
      assert.deepEqual(await advisoryLocks(db), [], 'no advisory lock left on any server connection');
    });
    assert.deepEqual(await catalogSnapshot(db), before, 'catalog unchanged');
    assert.deepEqual(await history(db, 'app2'), []);
    assert.deepEqual(await history(db, 'public'), []);
    assert.deepEqual(await advisoryLocks(db), [], 'no advisory lock left on any server connection');
  });

  it('four up at once through the pool (each is traffic for the others): none migrates', async () => {
    await db.sql(preFixSchema('twice'));
    const before = await catalogSnapshot(db);
    await withPool({ mode: 'transaction' }, async (pool) => {
      const runs = await Promise.all([1, 2, 3, 4].map(() => migrate(pool.url(db.name), ['up', '--schema', 'twice'])));
      for (const r of runs) {
        assert.equal(r.code, 2, r.stderr);
        assert.match(lastLine(r.stderr), POOLER_LINE);
      }
      assert.deepEqual(await catalogSnapshot(db), before);
      assert.deepEqual(await advisoryLocks(db), []);
    });
  });

  it('status and --dry-run are read-only and work through the pool; the dry run says up would be refused', async () => {
    await db.sql(preFixSchema('looks'));
    const before = await catalogSnapshot(db);
    await withPool({ mode: 'transaction' }, async (pool) => {
      const status = await migrate(pool.url(db.name), ['status', '--schema', 'looks', '--json']);
      assert.equal(status.code, 1, status.stderr);
      assert.deepEqual(status.json().summary, { applied: 0, pending: SHIPPED.length, modified: 0, missing: 0 });
      const dry = await migrate(pool.url(db.name), ['up', '--dry-run', '--schema', 'looks']);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /^-- up would refuse before applying anything: .*looks like a transaction-mode pooler; use a direct or session-mode URL for migrations$/m);
      assert.match(dry.stdout, /CREATE UNIQUE INDEX CONCURRENTLY "telegram_sessions_user_id_unique" ON "looks"\.telegram_sessions/);
      const dryJson = await migrate(pool.url(db.name), ['up', '--dry-run', '--schema', 'looks', '--json']);
      assert.equal(dryJson.code, 0, dryJson.stderr);
      assert.match(dryJson.json().refusal, /transaction-mode pooler/);
      assert.equal(dryJson.json().pooling, 'transaction');
      assert.deepEqual(await catalogSnapshot(db), before, 'nothing changed');
      assert.deepEqual(await advisoryLocks(db), []);
    });
  });
});

describe('tsm migrate through a session-mode PgBouncer', { skip }, () => {
  it('up applies everything into the right schema with the right checksums; no setting or lock outlives it on the pooled connections', async () => {
    await withPool({ mode: 'session', settings: { server_reset_query: '' } }, async (pool) => {
      await db.sql(`ALTER DATABASE ${qi(db.name)} SET lock_timeout = '9s'`);
      await db.sql(`ALTER DATABASE ${qi(db.name)} SET statement_timeout = '7s'`);
      await db.sql(`ALTER DATABASE ${qi(db.name)} SET idle_in_transaction_session_timeout = '11s'`);
      try {
        await db.sql(preFixSchema('app3'));
        await seed(db, 'app3', 1000);
        const before = await userObjects(db);
        const traffic = await startWriters(pool.url(db.name), 'app3', 2, { pauseMs: 5 });
        const r = await migrate(pool.url(db.name), ['up', '--schema', 'app3', '--json']);
        const seen = await traffic.stop();
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(seen.errors, []);
        assert.deepEqual(r.json().steps.map((s: { name: string }) => s.name), SHIPPED);
        assert.deepEqual(objectDiff(before, await userObjects(db)), { added: upAdds('app3'), removed: [] }, 'everything went to app3, nothing elsewhere');
        assert.deepEqual(await recordedChecksums(db, 'app3'), Object.fromEntries(SHIPPED.map((n) => [n, shippedChecksum(n)])));
        assert.deepEqual(await advisoryLocks(db), [], 'no advisory lock left');
        for (const s of await pooledServerSettings(pool)) {
          assert.deepEqual(
            { lock_timeout: s.lock_timeout, statement_timeout: s.statement_timeout, idle: s.idle, advisory: s.advisory },
            { lock_timeout: '9s', statement_timeout: '7s', idle: '11s', advisory: 0 },
            `server connection pid ${s.pid} keeps nothing of tsm's`,
          );
        }
        // down through the same pool: reverted, and again nothing left behind.
        const down = await migrate(pool.url(db.name), ['down', '--schema', 'app3']);
        assert.equal(down.code, 0, down.stderr);
        assert.deepEqual(await history(db, 'app3'), SHIPPED.slice(0, -1));
        for (const s of await pooledServerSettings(pool)) {
          assert.deepEqual([s.lock_timeout, s.statement_timeout, s.idle, s.advisory], ['9s', '7s', '11s', 0], `pid ${s.pid} after down`);
        }
      } finally {
        await db.sql(`ALTER DATABASE ${qi(db.name)} RESET ALL`);
      }
    });
  });

  it('two up at once through the pool: one applies, the other finds nothing to do; both exit 0', async () => {
    await db.sql(preFixSchema('pair'));
    await withPool({ mode: 'session', settings: { server_reset_query: '' } }, async (pool) => {
      const [a, b] = await Promise.all([migrate(pool.url(db.name), ['up', '--schema', 'pair', '--json']), migrate(pool.url(db.name), ['up', '--schema', 'pair', '--json'])]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      assert.deepEqual([a.json().steps.length, b.json().steps.length].sort(), [0, SHIPPED.length]);
      assert.deepEqual(await history(db, 'pair'), SHIPPED);
      assert.deepEqual(await advisoryLocks(db), []);
    });
  });
});
