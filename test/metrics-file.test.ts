/**
 * `tsm test-write --metrics-file`: the Prometheus textfile for node_exporter, written atomically,
 * whose counts match what the run did (passing and failing runs), and refused up front (exit 2)
 * when it could never be written.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { rmSync } from 'node:fs';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema, preFixSchema } from './helpers/fixtures.js';
import { parseProm } from './helpers/prom-text.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + preFixSchema('prefix'));
const dir = mkdtempSync(join(tmpdir(), 'tsm-metrics-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('tsm test-write --metrics-file', () => {
  it('a passing run: counts match the JSON, ok gauge 1, nothing else left in the directory', async () => {
    const file = join(dir, 'tsm.prom');
    writeFileSync(file, 'stale content that must be replaced\n');
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--lengths', '1,68,800', '--rounds', '4', '--metrics-file', file]);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json();
    const m = parseProm(readFileSync(file, 'utf8'));
    // Two saves per length (insert, update) and every race call; all succeeded at the first attempt.
    const saves = 2 * j.results.length + j.race.calls;
    assert.equal(m.value('session_save_attempts_total', { status: 'success' }), saves);
    assert.equal(m.value('session_save_attempts_total', { status: 'failed' }), 0);
    assert.equal(m.sum('session_save_errors_total'), 0);
    assert.equal(m.value('session_save_duration_seconds_count', { status: 'success' }), saves);
    assert.equal(m.value('tsm_test_write_ok'), 1);
    assert.equal(m.value('tsm_test_write_race_rows_left'), 1);
    const ts = m.value('tsm_test_write_timestamp_seconds');
    assert.ok(Math.abs(ts - Date.now() / 1000) < 120, `timestamp ${ts}`);
    assert.deepEqual(readdirSync(dir), ['tsm.prom'], 'no temp file left behind');
    assert.doesNotMatch(readFileSync(file, 'utf8'), /[A-Za-z0-9+/]{40,}/, 'no session string');
  });

  it('a failing run: the file is still written, with the failures by error type and ok 0', async () => {
    const file = join(dir, 'failing.prom');
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'prefix', '--lengths', '68,800', '--rounds', '3', '--metrics-file', file]);
    assert.equal(r.code, 1);
    const j = r.json();
    const m = parseProm(readFileSync(file, 'utf8'));
    // One insert attempt per length (the update is skipped) and every race call; not retryable.
    const failed = j.results.length + j.race.calls;
    assert.equal(m.value('session_save_attempts_total', { status: 'failed' }), failed);
    assert.equal(m.value('session_save_errors_total', { error_type: 'missing_upsert_function' }), failed);
    assert.equal(m.value('session_save_attempts_total', { status: 'success' }), 0);
    assert.equal(m.value('tsm_test_write_ok'), 0);
    assert.equal(m.value('tsm_test_write_race_rows_left'), 0);
  });

  it('a directory that does not exist or cannot be written: exit 2 before connecting', async () => {
    const port = await freePort(); // a connect attempt would be exit 3
    const url = `postgres://x@127.0.0.1:${port}/x`;
    const missing = await runTsm(['test-write', '-d', url, '--metrics-file', join(dir, 'nope', 'tsm.prom')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^tsm: --metrics-file: directory .*nope does not exist\n$/);
    const asDir = join(dir, 'a-dir.prom');
    mkdirSync(asDir);
    const isDir = await runTsm(['test-write', '-d', url, '--metrics-file', asDir]);
    assert.equal(isDir.code, 2);
    assert.match(isDir.stderr, /is a directory/);
    if (process.getuid?.() !== 0) {
      const ro = join(dir, 'ro');
      mkdirSync(ro);
      chmodSync(ro, 0o555);
      const r = await runTsm(['test-write', '-d', url, '--metrics-file', join(ro, 'x.prom')]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /is not writable/);
    }
  });
});
