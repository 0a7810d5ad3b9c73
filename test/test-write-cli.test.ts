/**
 * `tsm test-write` through the real CLI on the fixed schema: the JSON document, the human output,
 * every length from 1 to 1,000,000, session_too_long on varchar(255), usage errors, exit codes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import type { TestWriteJson } from '../src/cli/commands/test-write/run.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + fixedSchema('tg') + fixedSchema('short'));
await db.sql('ALTER TABLE short.telegram_sessions ALTER COLUMN session_string_enc TYPE varchar(255)');

const testRows = async (schema = 'public'): Promise<number> =>
  (await db.sql(`SELECT count(*)::int AS n FROM "${schema}".telegram_sessions WHERE tenant_id = 'tsm-test'`)).rows[0].n;

/** A run of 40+ base64 characters would be (part of) a session string. */
const NO_SESSION = /[A-Za-z0-9+/]{40,}/;

function assertShape(j: TestWriteJson): void {
  assert.deepEqual(
    Object.keys(j),
    ['ok', 'database', 'via', 'prepared_statements', 'results', 'race', 'race_details', 'remedies', 'server_timeouts'],
    'ok first (docs/output.md)',
  );
  assert.deepEqual(Object.keys(j.server_timeouts), ['lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout']);
  for (const r of j.results) {
    const keys = Object.keys(r);
    assert.deepEqual(keys.filter((k) => !['code', 'sqlstate', 'detail'].includes(k)), ['length', 'insert', 'update', 'readback', 'ms', 'ok']);
    assert.equal(typeof r.ms, 'number');
  }
  assert.deepEqual(Object.keys(j.race), ['concurrency', 'rounds', 'calls', 'errors', 'rows_left', 'ok']);
}

describe('tsm test-write on the fixed schema', () => {
  it('defaults: 68, 268, 800, the race of 8 × 20; exit 0; the JSON shape; no rows left', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url]);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json<TestWriteJson>();
    assertShape(j);
    assert.equal(j.database, db.url.replace(/:[^:@/]+@/, ':***@'));
    assert.equal(j.via, 'function');
    assert.deepEqual(
      j.results.map((x) => [x.length, x.insert, x.update, x.readback, x.ok]),
      [68, 268, 800].map((L) => [L, 'ok', 'ok', 'ok', true]),
    );
    assert.deepEqual(j.race, { concurrency: 8, rounds: 20, calls: 320, errors: {}, rows_left: 1, ok: true });
    assert.equal(j.ok, true);
    assert.equal(await testRows(), 0);
    assert.doesNotMatch(r.stdout + r.stderr, NO_SESSION);
  });

  it('every length from 1 to 1,000,000, via the statement too', async () => {
    for (const via of ['function', 'statement']) {
      const r = await runTsm(['test-write', '--json', '-d', db.url, '--via', via, '--lengths', '1,2,3,4,255,256,4096,100000,1000000', '--rounds', '2']);
      assert.equal(r.code, 0, r.stderr);
      const j = r.json<TestWriteJson>();
      assert.equal(j.via, via);
      assert.deepEqual(j.results.map((x) => x.length), [1, 2, 3, 4, 255, 256, 4096, 100000, 1000000]);
      assert.ok(j.results.every((x) => x.ok && x.readback === 'ok'), JSON.stringify(j.results));
      assert.deepEqual(j.race, { concurrency: 8, rounds: 2, calls: 32, errors: {}, rows_left: 1, ok: true });
    }
    assert.equal(await testRows(), 0);
  });

  it('human output: a row per length, the race line, the verdict; progress on stderr', async () => {
    const r = await runTsm(['test-write', '-d', db.url, '--lengths', '68,800', '--concurrency', '4', '--rounds', '3']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^tsm test-write: postgres:\/\/.*, schema public, via function\n/);
    assert.match(r.stdout, /│ 68 +│ ok +│ ok +│ ok +│ \d+ ms/);
    assert.match(r.stdout, /│ 800 +│ ok +│ ok +│ ok +│ \d+ ms/);
    assert.match(r.stdout, /race: 4 connections × 3 rounds .*: 24 calls, 0 errors, rows left 1 → ok/);
    assert.match(r.stdout, /test rows removed \(\d+ rows, tenant tsm-test\)/);
    assert.match(r.stdout, /\nok: every session was saved/);
    assert.doesNotMatch(r.stdout, /passed|failed/, 'summary wording is ok / failing');
    assert.match(r.stderr, /saving a session of 68 characters/);
    assert.doesNotMatch(r.stdout + r.stderr, NO_SESSION);
  });

  it('--schema: writes only there', async () => {
    await db.sql(`INSERT INTO public.telegram_sessions (tenant_id, user_id) VALUES ('app', 'marker')`);
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'tg', '--lengths', '68', '--rounds', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json().ok, true);
    // The public table was never written (its only row is the marker).
    assert.deepEqual((await db.sql('SELECT user_id FROM public.telegram_sessions')).rows, [{ user_id: 'marker' }]);
    await db.sql(`DELETE FROM public.telegram_sessions WHERE user_id = 'marker'`);
  });

  it('session_too_long when the session column is varchar(255): 255 fits, 256 does not; exit 1, rows removed', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'short', '--lengths', '68,255,256,800', '--rounds', '2']);
    assert.equal(r.code, 1, r.stderr);
    const j = r.json<TestWriteJson>();
    assert.deepEqual(
      j.results.map((x) => [x.length, x.insert, x.update, x.readback, x.ok, x.code ?? null]),
      [
        [68, 'ok', 'ok', 'ok', true, null],
        [255, 'ok', 'ok', 'ok', true, null],
        [256, 'fail', 'skipped', 'skipped', false, 'session_too_long'],
        [800, 'fail', 'skipped', 'skipped', false, 'session_too_long'],
      ],
    );
    // The race saves 800-character sessions: every call fails the same way.
    assert.deepEqual(j.race.errors, { session_too_long: 32 });
    assert.equal(j.race.ok, false);
    assert.equal(j.ok, false);
    assert.equal(await testRows('short'), 0);

    const h = await runTsm(['test-write', '-d', db.url, '--schema', 'short', '--lengths', '256', '--rounds', '1']);
    assert.equal(h.code, 1);
    assert.match(h.stdout, /session_too_long \(22001\)/);
    assert.match(h.stdout, /remedy: tsm migrate up --schema short \(widens varchar session columns to text/);
    assert.match(h.stdout, /\nfailing: 1 of 1 lengths, the race\n$/);
  });
});

describe('tsm test-write: usage and connection errors', () => {
  const bad: [string, string[], RegExp][] = [
    ['a word', ['--lengths', 'abc'], /--lengths: 'abc' is not a whole number/],
    ['zero', ['--lengths', '68,0'], /--lengths: 0 is out of range \(expected 1 … 10000000\)/],
    ['negative', ['--lengths=-5'], /--lengths: -5 is out of range/],
    ['exponent', ['--lengths', '1e9'], /--lengths: '1e9' is not a whole number/],
    ['too long', ['--lengths', '10000001'], /--lengths: 10000001 is out of range/],
    ['an empty item', ['--lengths', '68,,800'], /--lengths: item 2 of '68,,800' is empty/],
    ['empty', ['--lengths', ''], /--lengths: item 1 of '' is empty/],
    ['a fraction', ['--lengths', '68.5'], /--lengths: '68.5' is not a whole number/],
    ['concurrency 0', ['--concurrency', '0'], /--concurrency: 0 is out of range \(expected 1 … 256\)/],
    ['concurrency 257', ['--concurrency', '257'], /--concurrency: 257 is out of range/],
    ['rounds 0', ['--rounds', '0'], /--rounds: 0 is out of range/],
    ['rounds abc', ['--rounds', 'abc'], /--rounds: 'abc' is not a whole number/],
  ];
  for (const [what, args, message] of bad) {
    it(`${what}: exit 2, one line naming it, before connecting`, async () => {
      const port = await freePort(); // nothing listens: a connect attempt would be exit 3
      const r = await runTsm(['test-write', '-d', `postgres://x@127.0.0.1:${port}/x`, ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    });
  }

  it('--via bogus: exit 2', async () => {
    const r = await runTsm(['test-write', '-d', db.url, '--via', 'sql']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
  });

  it('no database configured: exit 2', async () => {
    const r = await runTsm(['test-write']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^tsm: no database configured/);
  });

  it('nothing listening: exit 3, one line', async () => {
    const port = await freePort();
    const r = await runTsm(['test-write', '--json', '-d', `postgres://tsm:secret@127.0.0.1:${port}/x`]);
    assert.equal(r.code, 3);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'connection', 'the --json error document');
    assert.match(r.stderr, /^tsm: cannot connect to postgres:\/\/tsm:\*\*\*@127\.0\.0\.1:\d+\/x: connection refused/);
    assert.doesNotMatch(r.stderr, /secret/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});
