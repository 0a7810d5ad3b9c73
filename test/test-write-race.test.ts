/**
 * The race on the fixed schema must pass every time, not most of the time: 10 runs in a row of 8
 * connections × 20 rounds (insert race + update race), on both write paths, and more connections.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));

const leftovers = async (): Promise<number> =>
  (await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions WHERE tenant_id = 'tsm-test'`)).rows[0].n;

describe('the race on the fixed schema', () => {
  it('passes 10 times in a row (8 connections × 20 rounds, via the function)', async () => {
    for (let run = 1; run <= 10; run++) {
      const r = await runTsm(['test-write', '--json', '-d', db.url, '--lengths', '68']);
      assert.equal(r.code, 0, `run ${run}: ${r.stdout}${r.stderr}`);
      assert.deepEqual(r.json().race, { concurrency: 8, rounds: 20, calls: 320, errors: {}, rows_left: 1, ok: true }, `run ${run}`);
      assert.equal(await leftovers(), 0, `run ${run} left rows behind`);
    }
  });

  it('via the statement, and with 32 connections', async () => {
    const s = await runTsm(['test-write', '--json', '-d', db.url, '--lengths', '68', '--via', 'statement']);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(s.json().race, { concurrency: 8, rounds: 20, calls: 320, errors: {}, rows_left: 1, ok: true });
    const w = await runTsm(['test-write', '--json', '-d', db.url, '--lengths', '68', '--concurrency', '32', '--rounds', '5']);
    assert.equal(w.code, 0, w.stderr);
    assert.deepEqual(w.json().race, { concurrency: 32, rounds: 5, calls: 320, errors: {}, rows_left: 1, ok: true });
    assert.equal(await leftovers(), 0);
  });
});
