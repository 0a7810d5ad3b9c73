/**
 * The library's Prometheus metrics: a known mix of saves (successes, a validation failure, a
 * tenant mismatch, a retried lock_timeout) and the exposition text must count exactly that.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Registry, register as globalRegistry } from 'prom-client';
import { SessionStore, type SessionStoreOptions } from '../src/index.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';
import { parseProm } from './helpers/prom-text.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));

const stores: SessionStore[] = [];
after(() => Promise.all(stores.map((s) => s.close())));
function store(o: Partial<SessionStoreOptions> = {}): SessionStore {
  const s = new SessionStore({ connectionString: db.url, retry: { attempts: 3, baseDelayMs: 5 }, ...o });
  stores.push(s);
  return s;
}

const save = (s: SessionStore, userId: string, tenantId = 't') => s.save({ tenantId, userId, sessionStringEnc: 'x'.repeat(100), keyId: 'k' });

describe('session save metrics', () => {
  it('counts every attempt by outcome and every failed attempt by error type; durations match', async () => {
    const registry = new Registry();
    const s = store({ registry });
    for (let i = 0; i < 5; i++) assert.ok((await save(s, `m-${i}`)).ok);
    assert.equal((await s.save({ tenantId: '', userId: 'm-x', sessionStringEnc: 'x', keyId: 'k' })).ok, false); // validation
    assert.equal((await save(s, 'm-0', 'other-tenant')).ok, false); // tenant_mismatch, not retried

    // A lock_timeout on every attempt: 3 failed attempts, one save.
    const locked = store({ registry, poolConfig: { options: '-c lock_timeout=30' } });
    const holder = await db.client();
    await holder.query('BEGIN; LOCK TABLE telegram_sessions IN ACCESS EXCLUSIVE MODE');
    const r = await save(locked, 'm-locked');
    await holder.query('ROLLBACK');
    assert.deepEqual([r.ok, r.attempts], [false, 3]);

    const m = parseProm(await registry.metrics());
    assert.equal(m.types.session_save_attempts_total, 'counter');
    assert.equal(m.types.session_save_duration_seconds, 'histogram');
    assert.equal(m.types.session_save_errors_total, 'counter');
    assert.equal(m.value('session_save_attempts_total', { status: 'success' }), 5);
    assert.equal(m.value('session_save_attempts_total', { status: 'failed' }), 1 + 1 + 3);
    assert.equal(m.value('session_save_errors_total', { error_type: 'missing_required_field' }), 1);
    assert.equal(m.value('session_save_errors_total', { error_type: 'tenant_mismatch' }), 1);
    assert.equal(m.value('session_save_errors_total', { error_type: 'lock_timeout' }), 3);
    assert.equal(m.sum('session_save_errors_total'), m.value('session_save_attempts_total', { status: 'failed' }));
    for (const status of ['success', 'failed']) {
      assert.equal(m.value('session_save_duration_seconds_count', { status }), m.value('session_save_attempts_total', { status }), status);
      assert.equal(m.value('session_save_duration_seconds_bucket', { status, le: '+Inf' }), m.value('session_save_duration_seconds_count', { status }));
    }
    // The lock_timeout attempts each waited ~30 ms: at least 0.09 s of failed time in all.
    assert.ok(m.value('session_save_duration_seconds_sum', { status: 'failed' }) >= 0.09);
    // Buckets are cumulative.
    const buckets = m.samples.filter((x) => x.name === 'session_save_duration_seconds_bucket' && x.labels.status === 'success');
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value);
    // No label ever carries a session string or a user id.
    assert.ok(m.samples.every((x) => Object.keys(x.labels).every((k) => ['status', 'error_type', 'le'].includes(k))));
  });

  it('without a registry: a new one per store, never the global registry', async () => {
    const a = store();
    const b = store();
    await save(a, 'g-1');
    const ra = await a.registry();
    const rb = await b.registry();
    assert.ok(ra && rb && ra !== rb);
    assert.equal(parseProm(await a.metricsText()).value('session_save_attempts_total', { status: 'success' }), 1);
    assert.equal(parseProm(await b.metricsText()).value('session_save_attempts_total', { status: 'success' }), 0);
    assert.equal(globalRegistry.getSingleMetric('session_save_attempts_total'), undefined);
  });

  it('two stores on one registry share the metrics instead of failing to register them twice', async () => {
    const registry = new Registry();
    const a = store({ registry });
    const b = store({ registry, via: 'statement' });
    await save(a, 's-1');
    await save(b, 's-2');
    assert.equal(parseProm(await registry.metrics()).value('session_save_attempts_total', { status: 'success' }), 2);
  });

  it('metrics: false registers nothing', async () => {
    const s = store({ metrics: false });
    assert.ok((await save(s, 'n-1')).ok);
    assert.equal(await s.registry(), undefined);
    assert.equal(await s.metricsText(), '');
  });
});
