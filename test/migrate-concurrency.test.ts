/**
 * Concurrent deploys (issue 3): tsm's own advisory lock, polled on an idle connection. Two `up`
 * at once: one applies, the other waits and then finds nothing to do, both exit 0, each migration
 * recorded once; the waiting one polls while the other runs CREATE INDEX CONCURRENTLY, which a
 * blocking pg_advisory_lock() would deadlock. --lock-wait bounds the wait: exit 1, nothing applied.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lockKey } from '../src/migrate/lock.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, indexesOf, lastLine, migrate, seed, stderrWatcher } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);

describe('tsm migrate: concurrent runs', () => {
  it("two up at the same moment: one applies, the other waits then is up to date; each migration once", async () => {
    await db.sql(preFixSchema('public'));
    await seed(db, 'public', 100_000); // the index build takes a moment while the other process polls
    // Hold tsm's lock so that both processes are surely waiting, then let them race for it.
    const holder = await db.client();
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [lockKey('public')]);
    const wa = stderrWatcher();
    const wb = stderrWatcher();
    const a = migrate(db.url, ['up', '--json'], { onSpawn: wa.onSpawn });
    const b = migrate(db.url, ['up', '--json'], { onSpawn: wb.onSpawn });
    const waiting = /another tsm migrate holds the lock for schema public \(pid \d+\); waiting up to 60s \(--lock-wait\)/;
    await Promise.all([wa.until((s) => waiting.test(s)), wb.until((s) => waiting.test(s))]);
    await holder.query('SELECT pg_advisory_unlock($1::bigint)', [lockKey('public')]);
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    const steps = [ra.json().steps.length, rb.json().steps.length].sort();
    assert.deepEqual(steps, [0, SHIPPED.length], 'one applied all six, the other nothing');
    for (const r of [ra.json(), rb.json()]) assert.deepEqual(r.remaining, []);
    assert.deepEqual(await history(db), SHIPPED, 'each migration recorded once');
    const idx = (await indexesOf(db)).filter((i) => i.name === 'telegram_sessions_user_id_unique');
    assert.equal(idx.length, 1);
    assert.equal(idx[0]!.valid, true);
  });

  it('two up on a fresh schema with no lock held: both exit 0, history has each migration once', async () => {
    const [ra, rb] = await Promise.all([migrate(db.url, ['up', '--schema', 'race', '--json']), migrate(db.url, ['up', '--schema', 'race', '--json'])]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(ra.json().steps.length + rb.json().steps.length, SHIPPED.length);
    assert.deepEqual(await history(db, 'race'), SHIPPED);
  });

  it('--lock-wait expires: exit 1 within the bound, names the holder, nothing applied', async () => {
    const holder = await db.client();
    const pid = (await holder.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [lockKey('waitless')]);
    const started = Date.now();
    const r = await migrate(db.url, ['up', '--schema', 'waitless', '--lock-wait', '1s']);
    const elapsed = Date.now() - started;
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(
      lastLine(r.stderr),
      new RegExp(`^tsm: another tsm migrate holds the migration lock for schema waitless \\(pid ${pid}, tsm-test, connected \\d+ s ago\\); gave up after 1(\\.\\d)?s \\(--lock-wait 1s\\); nothing was applied$`),
    );
    // The message above carries tsm's own measured wait (1–1.9 s). This bound only proves the
    // 60 s default was not used; it leaves room for Node's start on a loaded machine.
    assert.ok(elapsed < 30_000, `gave up in ${elapsed} ms`);
    const schema = await db.sql(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'waitless'`);
    assert.equal(schema.rows[0].n, 0, 'not even the schema was created');
    await holder.query('SELECT pg_advisory_unlock_all()');
  });

  it("the lock is per schema and not node-pg-migrate's: another schema's migration, or node-pg-migrate's lock, does not block", async () => {
    const holder = await db.client();
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [lockKey('someone_else')]);
    await holder.query('SELECT pg_advisory_lock(7241865325823964)'); // node-pg-migrate's PG_MIGRATE_LOCK_ID
    const r = await migrate(db.url, ['up', '--schema', 'mine', '--lock-wait', '1s']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await history(db, 'mine'), SHIPPED);
    await holder.query('SELECT pg_advisory_unlock_all()');
  });
});
