/**
 * tsm demo (issue 5): the whole story on a throwaway embedded PostgreSQL, no database needed.
 * Runs the real CLI; checks every step's result, the expected red-then-green doctor, and that
 * the server is gone afterwards (files deleted, port closed), also after Ctrl-C.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { describe, it } from 'node:test';
import type { DemoReport } from '../src/cli/commands/demo/run.js';
import type { DedupeReport } from '../src/dedupe/engine.js';
import type { DoctorReport } from '../src/doctor/index.js';
import { runTsm } from './helpers/cli.js';

/** Resolves true when something listens on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const STEPS = ['doctor', 'dedupe', 'migrate up', 'doctor', 'test-write'];

describe('tsm demo', () => {
  it('--json: exit 0, one result per step, doctor red then green, test-write ok, nothing left behind', async () => {
    const r = await runTsm(['demo', '--json'], { timeoutMs: 180_000 });
    const j = r.json<DemoReport>();
    assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(j.steps?.map((s) => [s.name, s.exit_code, s.problem]))}`);
    assert.equal(j.ok, true);
    assert.deepEqual(j.steps.map((s) => s.name), STEPS);
    for (const s of j.steps) {
      assert.equal(s.ok, true, `${s.name}: ${s.problem}`);
      assert.equal(s.exit_code, s.expected_exit_code, s.name);
      assert.ok(s.result && typeof s.result === 'object' && !('error' in s.result), `${s.name} has its result`);
    }
    const [red, dedupe, , green, write] = j.steps;
    assert.ok(red && dedupe && green && write, 'five steps');
    const redReport = red.result as DoctorReport;
    const greenReport = green.result as DoctorReport;
    const dedupeReport = dedupe.result as DedupeReport;
    assert.equal(red.exit_code, 1, 'the first doctor is red');
    const failing = redReport.checks.filter((c) => c.status === 'fail').map((c) => c.id);
    for (const id of ['index.user-id-unique', 'index.on-conflict', 'data.duplicates', 'columns.diagnostics', 'function.upsert']) {
      assert.ok(failing.includes(id), `doctor step 1 fails ${id} (failing: ${failing.join(', ')})`);
    }
    assert.ok(redReport.checks.filter((c) => c.status === 'fail').every((c) => c.remedy), 'each problem has a remedy');
    assert.equal(dedupeReport.archived, 4);
    assert.equal(dedupeReport.duplicates_remaining, 0);
    assert.equal(green.exit_code, 0);
    const notOk = greenReport.checks.filter((c) => c.status !== 'ok').map((c) => `${c.id}: ${c.status}`);
    assert.deepEqual(notOk, [], 'the last doctor is all ok');
    assert.equal(write.exit_code, 0);

    // The server is gone: stopped (port closed) and its files deleted; its URL was masked.
    assert.equal(j.server.kept, false);
    assert.match(j.server.url, /^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/tsm_demo$/);
    assert.match(j.server.data_dir, /tsm-pg-[^/]+\/data$/);
    assert.equal(existsSync(dirname(j.server.data_dir)), false, `${dirname(j.server.data_dir)} was left behind`);
    assert.equal(await listening(j.server.port), false, 'the server was stopped');
    assert.ok(r.stderr.includes(dirname(j.server.data_dir)), 'progress on stderr says where the server lives');
  });

  it('human output: a heading per step, each command rendered, a final ok line', async () => {
    const r = await runTsm(['demo'], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    STEPS.forEach((name, i) => assert.match(r.stdout, new RegExp(`━━ ${i + 1}/5  tsm ${name}  ━━`)));
    assert.match(r.stdout, /index\.on-conflict .*fail/);
    assert.match(r.stdout, /rows before = rows after \+ rows archived: 10 = 6 \+ 4/);
    assert.match(r.stdout, /ok: the story went as expected/);
    assert.match(r.stdout, /the embedded PostgreSQL was stopped and its files deleted\n$/);
    assert.doesNotMatch(r.stdout, /tsm-[a-z0-9]{8}@/, 'no password');
    assert.match(r.stderr, /^tsm demo: starting a throwaway PostgreSQL/, 'plain progress lines when stderr is not a terminal');
  });

  it('Ctrl-C: the server is stopped and its files deleted, exit 130', async () => {
    let dir: string | undefined;
    let port: number | undefined;
    const r = await runTsm(['demo'], {
      timeoutMs: 60_000,
      onSpawn: (child) => {
        let err = '';
        child.stderr!.on('data', (d) => {
          err += d;
          dir ??= /initialising embedded PostgreSQL in (\S+)\/data/.exec(err)?.[1];
          port ??= Number(/on 127\.0\.0\.1:(\d+)/.exec(err)?.[1]) || undefined;
          if (/building the pre-fix state/.test(err) && !child.killed) child.kill('SIGINT');
        });
      },
    });
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /SIGINT: stopping the embedded PostgreSQL and deleting its files/);
    assert.ok(dir && port, r.stderr);
    assert.equal(existsSync(dir), false, `${dir} was left behind`);
    assert.equal(await listening(port), false, 'the server was stopped');
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});
