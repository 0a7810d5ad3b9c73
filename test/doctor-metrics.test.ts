/**
 * `tsm doctor --metrics-file` (issue 13): one gauge per check (0 ok, 1 warn, 2 fail, -1 skipped),
 * the run's timestamp, duration and ok gauge, written atomically in node_exporter's textfile
 * format (checked by `promtool check metrics` where promtool is installed), also when doctor
 * cannot connect; refused up front (exit 2) when the file could never be written.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { ALL_IDS } from './helpers/doctor.js';
import { fixedSchema, preFixSchema } from './helpers/fixtures.js';
import { parseProm } from './helpers/prom-text.js';
import { findPart, requirePart } from './helpers/topology.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + preFixSchema('prefix'));
await db.sql(`INSERT INTO prefix.telegram_sessions (tenant_id, user_id) VALUES ('t', NULL)`);
const dir = mkdtempSync(join(tmpdir(), 'tsm-doctor-metrics-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const NAMES = ['tsm_doctor_check_status', 'tsm_doctor_run_timestamp_seconds', 'tsm_doctor_run_duration_seconds', 'tsm_doctor_run_ok'];

/** `promtool check metrics` on the file: its lint must pass (skipped with a message without promtool, a failure under CI). */
function promtoolAccepts(text: string): void {
  const promtool = findPart('promtool');
  if (!promtool) return;
  const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.status, 0, `promtool check metrics: ${r.stdout}${r.stderr}`);
}

describe('tsm doctor --metrics-file', () => {
  it('a healthy schema: every check 0 (migrations skipped -1), run_ok 1, fresh timestamp; the JSON agrees; nothing else left in the directory', async () => {
    const file = join(dir, 'doctor.prom');
    writeFileSync(file, 'stale content that must be replaced\n');
    const t0 = Date.now() / 1000;
    const r = await runTsm(['doctor', '--json', '-d', db.url, '--metrics-file', file]);
    assert.equal(r.code, 0, r.stderr);
    const text = readFileSync(file, 'utf8');
    const m = parseProm(text);
    for (const name of NAMES) assert.equal(m.types[name], 'gauge', name);
    for (const name of NAMES) assert.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name} has HELP`);
    const report = r.json();
    assert.deepEqual(
      m.samples.filter((s) => s.name === 'tsm_doctor_check_status').map((s) => s.labels.check),
      ALL_IDS,
      'one gauge per check, in the report order',
    );
    for (const c of report.checks) {
      assert.equal(m.value('tsm_doctor_check_status', { check: c.id }), { ok: 0, warn: 1, fail: 2, skipped: -1 }[c.status as string], c.id);
    }
    assert.equal(m.value('tsm_doctor_check_status', { check: 'migrations' }), -1);
    assert.equal(m.value('tsm_doctor_run_ok'), 1);
    const ts = m.value('tsm_doctor_run_timestamp_seconds');
    assert.ok(ts >= Math.floor(t0) && ts <= Date.now() / 1000 + 1, `timestamp ${ts}`);
    const took = m.value('tsm_doctor_run_duration_seconds');
    assert.ok(took > 0 && took < 120, `duration ${took}`);
    assert.deepEqual(readdirSync(dir), ['doctor.prom'], 'no temp file left behind');
    promtoolAccepts(text);
  });

  it('a broken schema: failing checks 2, the NULL user_id warning 1, run_ok 0, exit 1; the file is written all the same', async () => {
    const file = join(dir, 'prefix.prom');
    const r = await runTsm(['doctor', '-d', db.url, '--schema', 'prefix', '--metrics-file', file]);
    assert.equal(r.code, 1);
    const text = readFileSync(file, 'utf8');
    const m = parseProm(text);
    assert.equal(m.value('tsm_doctor_check_status', { check: 'index.user-id-unique' }), 2);
    assert.equal(m.value('tsm_doctor_check_status', { check: 'index.on-conflict' }), 2);
    assert.equal(m.value('tsm_doctor_check_status', { check: 'data.null-user-id' }), 1);
    assert.equal(m.value('tsm_doctor_check_status', { check: 'connection' }), 0);
    assert.equal(m.value('tsm_doctor_run_ok'), 0);
    promtoolAccepts(text);
  });

  it('cannot connect: exit 3, and the file says so (connection 2, the rest -1, run_ok 0)', async () => {
    const file = join(dir, 'down.prom');
    const port = await freePort();
    const r = await runTsm(['doctor', '-d', `postgres://x@127.0.0.1:${port}/x`, '--connect-timeout', '2', '--metrics-file', file]);
    assert.equal(r.code, 3);
    const m = parseProm(readFileSync(file, 'utf8'));
    assert.equal(m.value('tsm_doctor_check_status', { check: 'connection' }), 2);
    assert.equal(m.value('tsm_doctor_check_status', { check: 'table' }), -1);
    assert.equal(m.samples.filter((s) => s.name === 'tsm_doctor_check_status').length, ALL_IDS.length);
    assert.equal(m.value('tsm_doctor_run_ok'), 0);
  });

  it('a directory that does not exist, a directory as the file, or --explain with it: exit 2 before connecting', async () => {
    const port = await freePort(); // a connect attempt would be exit 3
    const url = `postgres://x@127.0.0.1:${port}/x`;
    const missing = await runTsm(['doctor', '-d', url, '--metrics-file', join(dir, 'nope', 'doctor.prom')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^tsm: --metrics-file: directory .*nope does not exist\n$/);
    const asDir = join(dir, 'a-dir.prom');
    mkdirSync(asDir);
    const isDir = await runTsm(['doctor', '-d', url, '--metrics-file', asDir]);
    assert.equal(isDir.code, 2);
    assert.match(isDir.stderr, /is a directory/);
    const explain = await runTsm(['doctor', '--explain', 'table', '--metrics-file', join(dir, 'x.prom')]);
    assert.equal(explain.code, 2);
    assert.match(explain.stderr, /^tsm: --metrics-file: --explain runs no checks/);
  });

  it('promtool is there under CI', { skip: requirePart('promtool') }, () => {
    assert.ok(findPart('promtool'));
  });
});
