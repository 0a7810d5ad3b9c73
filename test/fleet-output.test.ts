/**
 * The fleet's presentation, no database: the progress line (a terminal only), the table's width on
 * a terminal, each command's one-line summary of its JSON document, and the fleet flags' defaults.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PROFILES } from '../src/cli/fleet/commands.js';
import { makeFleetProgress, progressText } from '../src/cli/fleet/progress.js';
import { renderRows, totalLine } from '../src/cli/fleet/render.js';
import { parseFleetSettings } from '../src/cli/fleet/run.js';
import { makeStyle } from '../src/report/style.js';

function fakeStream(isTTY: boolean) {
  let text = '';
  return {
    isTTY,
    write(chunk: string | Uint8Array): boolean {
      text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      return true;
    },
    get text() {
      return text;
    },
  };
}

describe('fleet output', () => {
  it('the progress line: on a terminal, redrawn in place, logs above it; otherwise nothing but the logs', () => {
    const counts = { total: 50, done: 12, running: 2, failed: 1, unreachable: 0 };
    assert.equal(progressText(counts), '12/50 done, 2 running, 1 failed');
    assert.equal(progressText({ ...counts, failed: 0, unreachable: 3 }), '12/50 done, 2 running, 3 unreachable');

    const tty = fakeStream(true);
    const p = makeFleetProgress(tty as unknown as NodeJS.WriteStream);
    p.update(counts);
    p.log('[tenant_a] tsm migrate: applying 0004_user_id_unique_index');
    p.done();
    assert.equal(
      tty.text,
      '\r\x1b[2K12/50 done, 2 running, 1 failed' + '\r\x1b[2K[tenant_a] tsm migrate: applying 0004_user_id_unique_index\n12/50 done, 2 running, 1 failed' + '\r\x1b[2K',
    );

    const pipe = fakeStream(false);
    const q = makeFleetProgress(pipe as unknown as NodeJS.WriteStream);
    q.update(counts);
    q.log('[tenant_a] a log line');
    q.done();
    assert.equal(pipe.text, '[tenant_a] a log line\n', 'no progress line when not a terminal');
  });

  it('the table: one line per row off a terminal; on a terminal the summary column wraps to fit', () => {
    const style = makeStyle(false);
    const long = 'x '.repeat(100).trim();
    const rows = [{ name: 'tenant_a', url: 'postgres://app:***@db1:5432/tenant_a', status: 'failed' as const, exit_code: 1, summary: long }];
    const wide = renderRows(rows, style);
    assert.equal(wide.split('\n').length, 5, 'head, rule, one row, borders');
    const narrow = renderRows(rows, style, 100);
    for (const line of narrow.split('\n')) assert.ok(line.length <= 100, `fits in 100 columns: ${line.length}`);
    assert.ok(narrow.split('\n').length > 5, 'the summary wrapped');
    assert.equal(totalLine([{ status: 'ok' }, { status: 'skipped' }, { status: 'ok' }]), '3 targets: 2 ok, 0 failed, 0 unreachable, 1 skipped');
  });

  it("each command's summary line reads its own JSON document", () => {
    const doctor = PROFILES.doctor.summarize(
      {
        summary: { ok: 8, warn: 1, fail: 4, skipped: 0 },
        checks: [
          { id: 'columns.diagnostics', status: 'fail' },
          { id: 'index.user-id-unique', status: 'fail' },
          { id: 'data.null-user-id', status: 'warn' },
          { id: 'index.on-conflict', status: 'fail' },
          { id: 'function.upsert', status: 'fail' },
        ],
      },
      1,
    );
    assert.equal(doctor, '8 ok, 1 warning, 4 failing: columns.diagnostics, index.user-id-unique, index.on-conflict, +1 more');
    assert.equal(PROFILES.doctor.summarize({ summary: { ok: 13, warn: 0, fail: 0 } }, 0), '13 ok, 0 warnings, 0 failing');

    const up = PROFILES['migrate up'];
    assert.equal(up.summarize({ steps: [{}, {}], remaining: [] }, 0), 'applied 2 migrations, none pending');
    assert.equal(up.summarize({ steps: [{}], remaining: ['b', 'c'] }, 0), 'applied 1 migration, 2 still pending');
    assert.equal(up.summarize({ steps: [], remaining: [] }, 0), 'up to date, nothing to do');
    assert.equal(up.summarize({ dry_run: true, migrations: [{}, {}, {}], refusal: null }, 0), 'dry run: 3 migrations would run');

    const status = PROFILES['migrate status'];
    assert.equal(status.summarize({ up_to_date: true, summary: { applied: 6, pending: 0, modified: 0, missing: 0 } }, 0), 'up to date (6 applied)');
    assert.equal(status.summarize({ up_to_date: false, summary: { applied: 3, pending: 3, modified: 0, missing: 0 } }, 1), '3 pending, 3 applied');

    const tw = PROFILES['test-write'];
    assert.equal(tw.summarize({ ok: true, results: [{}, {}, {}], race: { concurrency: 8, rounds: 20, ok: true } }, 0), 'all writes ok: 3 lengths, race 8 × 20');
    assert.equal(
      tw.summarize({ ok: false, results: [{ length: 68, ok: true }, { length: 800, ok: false, code: 'session_too_long' }], race: { concurrency: 8, rounds: 20, ok: false, rows_left: 2, errors: { duplicate_session: 3 } } }, 1),
      'failing: length 800 (session_too_long); race 8 × 20: 2 rows left, duplicate_session',
    );
    // A document of another shape: plainer, never wrong.
    assert.equal(PROFILES.doctor.summarize(null, 1), 'exit 1');
    assert.equal(up.summarize({ something: 'else' }, 0), 'exit 0');
  });

  it('fleet flags: defaults (stop for migrate up, continue otherwise) and ranges', () => {
    const none = { positional: [], options: { targets: 'f.txt' } };
    assert.deepEqual(parseFleetSettings('migrate up', none), { targets: 'f.txt', targetsLike: undefined, parallel: 4, canary: 0, onError: 'stop', budget: undefined });
    for (const c of ['doctor', 'migrate status', 'test-write'] as const) assert.equal(parseFleetSettings(c, none).onError, 'continue', c);
    assert.equal(parseFleetSettings('doctor', { positional: [], options: { targets: 'f', connectionBudget: '12', parallel: '16', canary: '2' } }).budget, 12);
    assert.throws(() => parseFleetSettings('doctor', { positional: [], options: { targets: 'f', parallel: '257' } }), /--parallel: 257 is out of range/);
    assert.throws(() => parseFleetSettings('doctor', { positional: [], options: { targets: 'f', onError: 'ignore' } }), /--on-error: 'ignore' is not one of stop, continue/);
  });
});
