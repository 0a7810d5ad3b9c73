/**
 * SessionStore.save() on the fixed schema: real-sized sessions on both write paths, validation
 * before the database, retries that end in success, the logger hook, pool ownership, schemas.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { SessionStore, makeSessionString, type SaveLogEvent, type SessionStoreOptions } from '../src/index.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';
import { outcome, settle, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + fixedSchema('Tg "Sessions"'));

const stores: SessionStore[] = [];
after(() => Promise.all(stores.map((s) => s.close())));
function store(o: Partial<SessionStoreOptions> = {}): SessionStore {
  const s = new SessionStore({ connectionString: db.url, metrics: false, ...o });
  stores.push(s);
  return s;
}

let n = 0;
const uid = (): string => `save-${++n}`;

describe('SessionStore.save() on the fixed schema', () => {
  for (const via of ['function', 'statement'] as const) {
    it(`via ${via}: 1 … 1,000,000 characters inserted, updated in place, read back byte-identical`, async () => {
      const s = store({ via });
      for (const L of [1, 68, 268, 800, 4096, 65_536, 1_000_000]) {
        const userId = uid();
        const a = makeSessionString(L);
        const r1 = await s.save({ tenantId: 't1', userId, sessionStringEnc: a, keyId: 'k-a', status: 'pending' });
        assert.ok(r1.ok, `${L}: insert ${JSON.stringify(r1)}`);
        assert.equal(r1.attempts, 1);
        assert.match(r1.id, /^[0-9a-f-]{36}$/);
        let b = makeSessionString(L);
        if (b === a) b = (a[0] === 'A' ? 'B' : 'A') + a.slice(1);
        const r2 = await s.save({ tenantId: 't1', userId, sessionStringEnc: b, keyId: 'k-b', status: 'authorized' });
        assert.ok(r2.ok, `${L}: update ${JSON.stringify(r2)}`);
        assert.equal(r2.id, r1.id, `${L}: the update keeps the row's id`);
        const rows = (await db.sql('SELECT id, session_string_enc, key_id, status, length(session_string_enc) AS len FROM telegram_sessions WHERE user_id = $1', [userId])).rows;
        assert.equal(rows.length, 1, `${L}: exactly one row`);
        assert.equal(rows[0].len, L);
        assert.ok(rows[0].session_string_enc === b, `${L}: read back byte-identical`);
        assert.deepEqual([rows[0].id, rows[0].key_id, rows[0].status], [r1.id, 'k-b', 'authorized']);
      }
    });
  }

  it('the base64 alphabet, exactly the length asked for', () => {
    for (const L of [1, 2, 3, 4, 5, 68, 799, 800, 801]) {
      const s = makeSessionString(L);
      assert.equal(s.length, L);
      assert.match(s, /^[A-Za-z0-9+/]+$/);
    }
  });

  it('status defaults to pending; auth_error/error_details: the function clears them, the statement writes them only when given', async () => {
    const f = store();
    const st = store({ via: 'statement' });
    const read = async (userId: string) =>
      (await db.sql('SELECT status, auth_error, error_details FROM telegram_sessions WHERE user_id = $1', [userId])).rows[0];
    const u1 = uid();
    assert.ok((await f.save({ tenantId: 't', userId: u1, sessionStringEnc: 'x', keyId: null, authError: 'flood_wait', errorDetails: 'wait 30 s' })).ok);
    assert.deepEqual(await read(u1), { status: 'pending', auth_error: 'flood_wait', error_details: 'wait 30 s' });
    assert.ok((await f.save({ tenantId: 't', userId: u1, sessionStringEnc: 'y', keyId: null, status: 'authorized' })).ok);
    assert.deepEqual(await read(u1), { status: 'authorized', auth_error: null, error_details: null });

    const u2 = uid();
    assert.ok((await st.save({ tenantId: 't', userId: u2, sessionStringEnc: 'x', keyId: null, authError: 'flood_wait', errorDetails: 'd' })).ok);
    assert.ok((await st.save({ tenantId: 't', userId: u2, sessionStringEnc: 'y', keyId: null, status: 'authorized' })).ok);
    assert.deepEqual(await read(u2), { status: 'authorized', auth_error: 'flood_wait', error_details: 'd' }, 'left as they were');
    assert.ok((await st.save({ tenantId: 't', userId: u2, sessionStringEnc: 'z', keyId: null, authError: null, errorDetails: null })).ok);
    assert.deepEqual(await read(u2), { status: 'pending', auth_error: null, error_details: null }, 'null clears them');
  });

  it('a schema whose name needs quoting', async () => {
    for (const via of ['function', 'statement'] as const) {
      const r = await store({ schema: 'Tg "Sessions"', via }).save({ tenantId: 't', userId: uid(), sessionStringEnc: 'abc', keyId: 'k' });
      assert.ok(r.ok, JSON.stringify(r));
    }
    const c = await db.sql(`SELECT count(*)::int AS n FROM "Tg ""Sessions""".telegram_sessions`);
    assert.equal(c.rows[0].n, 2);
  });
});

describe('validation before the database is touched', () => {
  it('missing_required_field with attempts 0, even when the server is unreachable', async () => {
    const port = await freePort();
    const events: SaveLogEvent[] = [];
    const s = store({ connectionString: `postgres://x@127.0.0.1:${port}/x`, logger: (e) => events.push(e) });
    const good = { tenantId: 't', userId: 'u', sessionStringEnc: 'abc', keyId: 'k' };
    const bad: [string, unknown][] = [
      ['empty tenant', { ...good, tenantId: '' }],
      ['blank user', { ...good, userId: '   ' }],
      ['missing user', { ...good, userId: undefined }],
      ['fractional user id', { ...good, userId: 4.2 }],
      ['unsafe integer user id', { ...good, userId: 2 ** 53 + 2 }],
      ['NaN user id', { ...good, userId: Number.NaN }],
      ['boolean user id', { ...good, userId: true }],
      ['non-string session', { ...good, sessionStringEnc: Buffer.from('abc') }],
      ['empty session', { ...good, sessionStringEnc: '' }],
      ['numeric key', { ...good, keyId: 7 }],
      ['empty status', { ...good, status: '' }],
      ['not an object', null],
    ];
    for (const [what, input] of bad) {
      const r = await s.save(input as never);
      assert.deepEqual(
        { ok: r.ok, code: !r.ok && r.code, sqlstate: !r.ok && r.sqlstate, retryable: !r.ok && r.retryable, attempts: r.attempts },
        { ok: false, code: 'missing_required_field', sqlstate: null, retryable: false, attempts: 0 },
        what,
      );
    }
    // And the same store does reach for the database with a valid input.
    const r = await s.save(good);
    assert.equal(!r.ok && r.code, 'connection_error');
    assert.equal(events.length, bad.length + 1);
  });
});

describe('retries', () => {
  it('a lock_timeout that clears: the save succeeds on a later attempt', async () => {
    const holder = await db.client();
    await holder.query('BEGIN; LOCK TABLE telegram_sessions IN ACCESS EXCLUSIVE MODE');
    // Up to 50 attempts, 40 ms of lock wait each plus ≤ 100 ms of backoff: several seconds in which
    // the lock is released, however slow the machine.
    const s = store({ poolConfig: { options: '-c lock_timeout=40' }, retry: { attempts: 50, baseDelayMs: 40, maxDelayMs: 100 }, metrics: true });
    const userId = uid();
    const saving = settle(s.save({ tenantId: 't', userId, sessionStringEnc: 'abc', keyId: 'k' }));
    // Released once an attempt has failed on the lock (not after a fixed time, which a slow connect could outlast).
    await waitFor('a save attempt that hit lock_timeout', async () => /session_save_errors_total\{error_type="lock_timeout"\} [1-9]/.test(await s.metricsText()), {
      timeoutMs: 30_000,
    });
    await holder.query('ROLLBACK');
    const r = await outcome(saving);
    assert.ok(r.ok, JSON.stringify(r));
    assert.ok(r.attempts >= 2 && r.attempts <= 50, `attempts: ${r.attempts}`);
    const rows = await db.sql('SELECT count(*)::int AS n FROM telegram_sessions WHERE user_id = $1', [userId]);
    assert.equal(rows.rows[0].n, 1);
    const text = await s.metricsText();
    assert.match(text, new RegExp(`session_save_errors_total\\{error_type="lock_timeout"\\} ${r.attempts - 1}\\n`));
    assert.match(text, /session_save_attempts_total\{status="success"\} 1\n/);
  });

  it('non-retryable codes are not retried; attempts bounded by retry.attempts', async () => {
    const s = store({ schema: 'nope', via: 'statement', retry: { attempts: 5, baseDelayMs: 1 } });
    const r = await s.save({ tenantId: 't', userId: uid(), sessionStringEnc: 'abc', keyId: 'k' });
    assert.deepEqual([r.ok, r.attempts], [false, 1]);
  });

  it('backoff grows and an AbortSignal stops retrying', async () => {
    const port = await freePort();
    const s = store({ connectionString: `postgres://x@127.0.0.1:${port}/x`, retry: { attempts: 4, baseDelayMs: 80, maxDelayMs: 1000 } });
    const t0 = performance.now();
    const r = await s.save({ tenantId: 't', userId: 'u', sessionStringEnc: 'abc', keyId: 'k' });
    const took = performance.now() - t0;
    assert.deepEqual([r.ok, r.attempts], [false, 4]);
    // Delays: [40,80] + [80,160] + [160,320] ms (equal jitter).
    assert.ok(took >= 280 && took < 2000, `took ${took} ms`);

    const ac = new AbortController();
    const slow = store({ connectionString: `postgres://x@127.0.0.1:${port}/x`, retry: { attempts: 50, baseDelayMs: 2000, maxDelayMs: 2000 } });
    setTimeout(() => ac.abort(), 100);
    const t1 = performance.now();
    const r2 = await slow.save({ tenantId: 't', userId: 'u', sessionStringEnc: 'abc', keyId: 'k' }, { signal: ac.signal });
    assert.equal(r2.ok, false);
    assert.ok(performance.now() - t1 < 1000, 'the abort cut the backoff short');
    assert.ok(r2.attempts < 3);
  });

  it('invalid retry options are refused when the store is built', () => {
    assert.throws(() => new SessionStore({ connectionString: db.url, retry: { attempts: 0 } }), /retry.attempts/);
    assert.throws(() => new SessionStore({ connectionString: db.url, retry: { baseDelayMs: -1 } }), /retry.baseDelayMs/);
    assert.throws(() => new SessionStore({ connectionString: db.url, via: 'sql' as never }), /via/);
  });
});

describe('the logger hook and the pool', () => {
  it('the logger gets user id, length and outcome only, never the session string', async () => {
    const events: unknown[] = [];
    const s = store({ logger: (e) => events.push(e) });
    const secret = makeSessionString(800);
    const userId = uid();
    await s.save({ tenantId: 't', userId, sessionStringEnc: secret, keyId: 'k' });
    await s.save({ tenantId: 'other', userId, sessionStringEnc: secret, keyId: 'k' });
    assert.deepEqual(events, [
      { userId, length: 800, outcome: 'saved' },
      { userId, length: 800, outcome: 'tenant_mismatch' },
    ]);
    assert.ok(!JSON.stringify(events).includes(secret.slice(0, 40)));
  });

  it('a logger that throws does not turn a save into an exception', async () => {
    const s = store({
      logger: () => {
        throw new Error('boom');
      },
    });
    const r = await s.save({ tenantId: 't', userId: uid(), sessionStringEnc: 'abc', keyId: 'k' });
    assert.equal(r.ok, true);
  });

  it('a pool you pass is used and left open by close(); its own pool is ended, and later saves fail cleanly', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2, application_name: 'tsm-test-mine' });
    try {
      const s = new SessionStore({ pool, metrics: false });
      assert.ok((await s.save({ tenantId: 't', userId: uid(), sessionStringEnc: 'abc', keyId: 'k' })).ok);
      await s.close();
      assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1, 'still usable');
    } finally {
      await pool.end();
    }
    const own = new SessionStore({ connectionString: db.url, metrics: false, poolConfig: { application_name: 'tsm-test-own' } });
    assert.ok((await own.save({ tenantId: 't', userId: uid(), sessionStringEnc: 'abc', keyId: 'k' })).ok);
    await own.close();
    const r = await own.save({ tenantId: 't', userId: uid(), sessionStringEnc: 'abc', keyId: 'k' });
    assert.deepEqual([r.ok, !r.ok && r.code], [false, 'database_error']);
    // The server notices a closed connection a moment later: poll briefly.
    let left = -1;
    for (let i = 0; i < 100 && left !== 0; i++) {
      if (i > 0) await new Promise((res) => setTimeout(res, 20));
      left = (await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tsm-test-own'`)).rows[0].n;
    }
    assert.equal(left, 0, 'its connections are closed');
  });

  it("its own pool says application_name 'tsm'", async () => {
    const s = store();
    assert.ok((await s.save({ tenantId: 't', userId: uid(), sessionStringEnc: 'abc', keyId: 'k' })).ok);
    const r = await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm'`);
    assert.ok(r.rows[0].n >= 1);
  });

  it('concurrent first saves of one user through one store: one row, one id', async () => {
    const s = store({ poolConfig: { max: 8 } });
    const userId = uid();
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) => s.save({ tenantId: 't', userId, sessionStringEnc: `s${i}`, keyId: `k${i}` })),
    );
    assert.ok(results.every((r) => r.ok));
    assert.equal(new Set(results.map((r) => r.ok && r.id)).size, 1);
    const c = await db.sql('SELECT count(*)::int AS n FROM telegram_sessions WHERE user_id = $1', [userId]);
    assert.equal(c.rows[0].n, 1);
  });
});
