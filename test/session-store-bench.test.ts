/**
 * `tsm bench` (upserts through SessionStore): a short real run reports sane numbers and removes
 * its rows; failures are counted and make it exit 1; Ctrl-C removes the rows too.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema, preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + preFixSchema('prefix'));
await db.sql(`INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc) VALUES ('tsm-bench', 'not-mine', 'keep'), ('app', '1', 'keep')`);

const own = async (): Promise<number> => (await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions WHERE session_string_enc IS DISTINCT FROM 'keep'`)).rows[0].n;
const foreign = async (): Promise<number> => (await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions WHERE session_string_enc = 'keep'`)).rows[0].n;

describe('tsm bench', () => {
  for (const via of ['function', 'statement']) {
    it(`via ${via}: calls, calls/s and ordered percentiles; its rows removed, others kept`, async () => {
      const r = await runTsm(['bench', '--json', '-d', db.url, '--clients', '3', '--duration', '1', '--users', '200', '--length', '800', '--via', via]);
      assert.equal(r.code, 0, r.stderr);
      const j = r.json();
      assert.equal(j.via, via);
      assert.equal(j.clients, 3);
      assert.equal(j.warmup_s, 1, 'the default warm-up');
      assert.ok(j.duration_s >= 1 && j.duration_s < 3, `duration ${j.duration_s}`);
      assert.ok(j.calls > 50, `calls ${j.calls}`);
      assert.deepEqual(j.errors, {});
      const expected = j.calls / j.duration_s; // duration_s is rounded to the ms
      assert.ok(Math.abs(j.calls_per_second - expected) <= 0.002 * expected + 1, `${j.calls_per_second} vs ${j.calls}/${j.duration_s}`);
      const l = j.latency_ms;
      assert.ok(0 < l.p50 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, JSON.stringify(l));
      assert.ok(j.rows_removed > 0 && j.rows_removed <= 200);
      assert.ok(j.client_cpu_us_per_call > 0, 'its own CPU per call');
      assert.equal(await own(), 0);
      assert.equal(await foreign(), 2);
    });
  }

  it('human output', async () => {
    const r = await runTsm(['bench', '-d', db.url, '--clients', '1', '--duration', '500ms', '--users', '10']);
    assert.equal(r.code, 0, r.stderr);
    // The clock stops when the last call returns: a little over 0.5 s on a loaded machine.
    assert.match(r.stdout, /1 client × 0\.\d+ s \(after 1 s of warm-up\), upserts over 10 user ids, 800-character sessions/);
    assert.match(r.stdout, /throughput: [\d,.]+ calls\/s/);
    assert.match(r.stdout, /latency: +p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms/);
    assert.match(r.stdout, /\nok: every call succeeded\n$/);
  });

  it('every call failing (no upsert function): counted by code, exit 1', async () => {
    const r = await runTsm(['bench', '--json', '-d', db.url, '--schema', 'prefix', '--clients', '2', '--duration', '300ms']);
    assert.equal(r.code, 1);
    const j = r.json();
    assert.ok(j.calls > 0);
    assert.deepEqual(Object.keys(j.errors), ['missing_upsert_function']);
    assert.equal(j.errors.missing_upsert_function, j.calls);
    assert.equal(j.calls_per_second, 0);
    // Never a silent code: the SQLSTATE and the server's message come with it.
    assert.equal(j.error_details.missing_upsert_function.sqlstate, '42883');
    assert.match(j.error_details.missing_upsert_function.message, /upsert_telegram_session/);
    const h = await runTsm(['bench', '-d', db.url, '--schema', 'prefix', '--clients', '1', '--duration', '200ms']);
    assert.equal(h.code, 1);
    assert.match(h.stdout, /missing_upsert_function: 42883: .*upsert_telegram_session/);
    assert.match(h.stdout, /remedy: tsm migrate up --schema prefix/);
  });

  it('Ctrl-C mid-run: exit 130, its rows removed', async () => {
    const r = await runTsm(['bench', '-d', db.url, '--clients', '4', '--duration', '60', '--users', '500'], {
      onSpawn: (child) => {
        let err = '';
        child.stderr?.on('data', (d) => {
          err += d;
          if (/4 clients for 60 s/.test(err)) setTimeout(() => child.kill('SIGINT'), 500);
        });
      },
    });
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /tsm: bench interrupted by SIGINT: bench rows removed/);
    assert.equal(await own(), 0);
    assert.equal(await foreign(), 2);
  });

  const bad: [string[], RegExp][] = [
    [['--clients', '0'], /--clients: 0 is out of range/],
    [['--clients', '257'], /--clients: 257 is out of range/],
    [['--duration', 'abc'], /--duration: 'abc' is not a duration/],
    [['--duration', '50ms'], /--duration: '50ms' is out of range/],
    [['--users', '0'], /--users: 0 is out of range/],
    [['--length', '1e3'], /--length: '1e3' is not a whole number/],
    [['--warmup', 'soon'], /--warmup: 'soon' is not a duration/],
    [['--warmup', '11m'], /--warmup: '11m' is out of range/],
  ];
  for (const [args, message] of bad) {
    it(`usage: ${args.join(' ')} → exit 2`, async () => {
      const port = await freePort();
      const r = await runTsm(['bench', '-d', `postgres://x@127.0.0.1:${port}/x`, ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }
});
