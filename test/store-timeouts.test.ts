/**
 * Timeouts never hang (issue 10): SessionStore.save() settles within its deadline whatever the
 * server does. On main, a save against a server that accepts and never answers never returned.
 * - connect: the harness's blackhole accepts TCP and never sends a byte → connection_error at
 *   connectTimeoutMs (the store's own pool, and a pool of yours without any timeout of its own);
 * - statement: a lock held by the test makes the upsert wait → statement_timeout at the save's
 *   deadline, the statement cancelled on the server (it never runs later), the pool slot back.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { SessionStore, type SaveFailure, type SessionStoreOptions } from '../src/index.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';
import { startBlackhole } from './helpers/topology.js';
import { outcome, settle, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));

const stores: SessionStore[] = [];
after(() => Promise.all(stores.map((s) => s.close())));
function store(o: Partial<SessionStoreOptions>): SessionStore {
  const s = new SessionStore({ connectionString: db.url, metrics: false, ...o });
  stores.push(s);
  return s;
}

const input = (userId: string) => ({ tenantId: 't', userId, sessionStringEnc: 'S'.repeat(800), keyId: 'k' });

/** Runs `fn`, returns its value and how long it took in ms. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, performance.now() - t0];
}

// A save that hangs is the failure under test: each test fails after 30 s instead of waiting for ever.
describe('a server that accepts and never answers (blackhole)', { timeout: 30_000 }, () => {
  it('its own pool: connection_error within the connect timeout, every attempt bounded', async () => {
    const hole = await startBlackhole();
    const s = store({ connectionString: hole.url(), connectTimeoutMs: 400, saveTimeoutMs: 3000, retry: { attempts: 2, baseDelayMs: 10 }, poolConfig: { max: 1 } });
    const [r, ms] = await timed(() => s.save(input('hole-1')));
    assert.equal(r.ok, false);
    const f = r as SaveFailure;
    assert.deepEqual([f.code, f.retryable, f.attempts], ['connection_error', true, 2], f.details);
    // Two attempts of 400 ms and a short pause; generous upper margin for a loaded machine.
    assert.ok(ms >= 700 && ms < 2900, `took ${Math.round(ms)} ms`);
    // The pool's one slot was freed by the first timeout: the second attempt opened a new connection.
    await waitFor('the second attempt reaching the blackhole', () => hole.accepted === 2);
  });

  it("the save's deadline wins over a longer connect timeout", async () => {
    const hole = await startBlackhole();
    const s = store({ connectionString: hole.url(), connectTimeoutMs: 60_000, saveTimeoutMs: 600 });
    const [r, ms] = await timed(() => s.save(input('hole-2')));
    assert.deepEqual([r.ok, !r.ok && r.code, !r.ok && r.sqlstate], [false, 'connection_error', null]);
    assert.match((r as SaveFailure).details, /no connection within 600 ms/);
    assert.ok(ms >= 550 && ms < 2500, `took ${Math.round(ms)} ms`);
  });

  it('a connect_timeout in the URL is honoured (libpq parity; pg alone ignores it)', async () => {
    const hole = await startBlackhole();
    // libpq's minimum is 2 s (connect_timeout=1 means 2).
    assert.equal(store({ connectionString: `${hole.url()}?connect_timeout=1` }).connectTimeoutMs, 2000);
    const s = store({ connectionString: `${hole.url()}?connect_timeout=2`, retry: { attempts: 1 } });
    assert.equal(s.connectTimeoutMs, 2000);
    const [r, ms] = await timed(() => s.save(input('hole-3')));
    assert.deepEqual([r.ok, !r.ok && r.code], [false, 'connection_error']);
    assert.ok(ms >= 1900 && ms < 4500, `took ${Math.round(ms)} ms`);
    // PGCONNECT_TIMEOUT from the environment the store is given.
    assert.equal(store({ connectionString: hole.url(), env: { PGCONNECT_TIMEOUT: '3' } }).connectTimeoutMs, 3000);
  });

  it('a pool of yours with no timeout at all: the save still settles at its deadline', async () => {
    const hole = await startBlackhole();
    const pool = new pg.Pool({ connectionString: hole.url(), max: 1 });
    pool.on('error', () => {});
    const s = new SessionStore({ pool, metrics: false, saveTimeoutMs: 500, connectTimeoutMs: 300 });
    const [r, ms] = await timed(() => s.save(input('hole-4')));
    assert.deepEqual([r.ok, !r.ok && r.code], [false, 'connection_error']);
    assert.ok(ms < 2500, `took ${Math.round(ms)} ms`);
    await hole.stop(); // the pool's pending connect fails now, and the pool can end
    await pool.end();
  });
});

describe('a statement that waits on a lock held by the test', { timeout: 30_000 }, () => {
  it('statement_timeout at the deadline; cancelled on the server; never written later; the pool slot is back', async () => {
    const s = store({ poolConfig: { max: 1 }, saveTimeoutMs: 800, retry: { attempts: 1 } });
    // Its one connection open first: the deadline below is about the statement, not a slow connect.
    assert.ok((await s.save(input('warm-1'))).ok);
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE telegram_sessions IN SHARE MODE');
    const [r, ms] = await timed(() => s.save(input('locked-1')));
    const f = r as SaveFailure;
    assert.deepEqual([f.ok, f.code, f.sqlstate, f.retryable], [false, 'statement_timeout', null, true], f.details);
    assert.match(f.details, /no answer within the save's deadline \(800 ms\); the statement was cancelled/);
    assert.ok(ms >= 750 && ms < 2500, `took ${Math.round(ms)} ms`);
    // The server no longer runs it: no backend of the store waits on the lock.
    await waitFor('the waiting upsert cancelled on the server', async () => {
      const w = await db.sql(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm' AND wait_event_type = 'Lock'`,
      );
      return w.rows[0].n === 0;
    });
    await holder.query('COMMIT');
    // The one pool slot is usable again (a lost slot would make this wait for ever: bounded by its deadline).
    const [again, ms2] = await timed(() => s.save(input('locked-2')));
    assert.ok(again.ok, JSON.stringify(again));
    assert.ok(ms2 < 2000, `the next save took ${Math.round(ms2)} ms`);
    // The cancelled upsert did not run once the lock went away.
    const n = await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions WHERE user_id = 'locked-1'`);
    assert.equal(n.rows[0].n, 0);
  });

  it('a retryable server error is retried only while the deadline allows', async () => {
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE telegram_sessions IN SHARE MODE');
    try {
      // lock_timeout 100 ms per attempt, 50 attempts allowed, 700 ms deadline: a few attempts, then the deadline.
      const s = store({ poolConfig: { options: '-c lock_timeout=100' }, saveTimeoutMs: 700, retry: { attempts: 50, baseDelayMs: 20, maxDelayMs: 40 } });
      const saving = settle(s.save(input('locked-3')));
      const [r, ms] = await timed(() => outcome(saving));
      const f = r as SaveFailure;
      assert.equal(f.ok, false);
      assert.ok(['lock_timeout', 'statement_timeout'].includes(f.code), f.code);
      assert.ok(f.attempts >= 2 && f.attempts < 50, `attempts ${f.attempts}`);
      assert.ok(ms < 2500, `took ${Math.round(ms)} ms`);
    } finally {
      await holder.query('ROLLBACK');
    }
  });

  it('per-call timeoutMs; bad timeouts are refused when the store is built', async () => {
    assert.throws(() => new SessionStore({ connectionString: db.url, saveTimeoutMs: 0 }), /saveTimeoutMs must be a positive number/);
    assert.throws(() => new SessionStore({ connectionString: db.url, connectTimeoutMs: -5 }), /connectTimeoutMs must be a positive number/);
    const s = store({ retry: { attempts: 1 }, poolConfig: { max: 1 } });
    assert.equal(s.saveTimeoutMs, 15_000, 'the default deadline');
    assert.ok((await s.save(input('warm-4'))).ok, 'its connection open first');
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE telegram_sessions IN SHARE MODE');
    try {
      const [r, ms] = await timed(() => s.save(input('locked-4'), { timeoutMs: 300 }));
      assert.deepEqual([r.ok, !r.ok && r.code], [false, 'statement_timeout']);
      assert.ok(ms >= 250 && ms < 2000, `took ${Math.round(ms)} ms`);
    } finally {
      await holder.query('ROLLBACK');
    }
  });
});
