/**
 * dedupe's progress line (issue 11): on a terminal, one line on stderr redrawn in place (pass,
 * rows moved of those planned, batches, rate, an estimate of what is left; the elapsed time of a
 * scan); nothing of the kind when stderr is not a terminal; --json unchanged. The terminal case
 * runs the real CLI under a pseudo-terminal (util-linux `script`).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { dedupeProgressLine, progressText } from '../src/cli/commands/dedupe/progress.js';
import type { DedupeProgress, DedupeReport } from '../src/dedupe/engine.js';
import { BIN, cleanEnv, runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { sleep } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
/** Carriage return + erase line: how the progress line is redrawn in place. */
const CLEAR = '\r\u001b[2K';

const moving = (over: Partial<DedupeProgress> = {}): DedupeProgress => ({
  phase: 'moving',
  pass: 1,
  planned: 200_000,
  movedThisPass: 50_000,
  moved: 50_000,
  batches: 37,
  elapsedMs: 2000,
  backendPid: null,
  ...over,
});

describe('the progress line', () => {
  it('says the pass, rows moved of planned, batches, rate and what is left', () => {
    assert.equal(progressText(moving(), 'telegram_sessions'), 'tsm dedupe: pass 1: 50,000 of 200,000 rows moved, 37 batches, 25,000 rows/s, about 6.0 s left');
    assert.equal(
      progressText(moving({ phase: 'scanning', pass: 2 }), 'telegram_sessions', 3400),
      'tsm dedupe: pass 2: scanning telegram_sessions for duplicate user_ids… 3.4 s',
    );
    assert.equal(progressText(moving({ phase: 'verifying' }), 'telegram_sessions', 400), 'tsm dedupe: checking the 50,000 moved rows row by row… 0.4 s');
    assert.match(progressText(moving({ movedThisPass: 1000, elapsedMs: 60_000 }), 't'), /, 17 rows\/s, about 3 h 19 min left$/);
    assert.match(progressText(moving({ movedThisPass: 150_000, elapsedMs: 60_000 }), 't'), /, about 20 s left$/);
    assert.match(progressText(moving({ movedThisPass: 40_000, elapsedMs: 60_000 }), 't'), /, about 4 min 0 s left$/);
  });

  it('is redrawn in place on a terminal and cleared at the end; writes nothing elsewhere', async () => {
    const out: string[] = [];
    const tty = dedupeProgressLine({ isTTY: true, write: (s: string) => out.push(s) }, 'telegram_sessions');
    tty.update(moving({ phase: 'scanning', elapsedMs: 0 }));
    await sleep(300); // the scan's elapsed time keeps moving
    tty.update(moving());
    tty.log('dedupe: pass 1: moved 200,000 rows');
    tty.done();
    const text = out.join('');
    assert.match(text, /tsm dedupe: pass 1: scanning telegram_sessions for duplicate user_ids… 0\.[2-9] s/);
    assert.ok(text.includes(`${CLEAR}tsm dedupe: pass 1: 50,000 of 200,000 rows moved`), text);
    assert.ok(text.includes(`${CLEAR}dedupe: pass 1: moved 200,000 rows\n`), 'a log line clears the progress line and stays');
    assert.ok(text.endsWith(CLEAR), 'the line is cleared at the end');

    const none: string[] = [];
    const pipe = dedupeProgressLine({ isTTY: false, write: (s: string) => none.push(s) }, 'telegram_sessions');
    pipe.update(moving());
    pipe.log('x');
    pipe.done();
    assert.deepEqual(none, []);
  });
});

describe('tsm dedupe, stderr a terminal or not', () => {
  it('not a terminal: stderr stays empty, stdout is the one JSON document', async () => {
    await db.sql(`${preFixSchema('pipe')}
      INSERT INTO pipe.telegram_sessions (tenant_id, user_id) SELECT 't', 'u-' || (g % 200) FROM generate_series(1, 600) g;`);
    const r = await runTsm(['dedupe', '-d', db.url, '--schema', 'pipe', '--batch-size', '10', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(r.json<DedupeReport>().archived, 400);
  });

  const script = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0 ? undefined : 'util-linux `script` not found (apt-get install util-linux)';
  it('a terminal (a real pty): the progress line on stderr, then the report', { skip: script }, async () => {
    await db.sql(`${preFixSchema('tty')}
      INSERT INTO tty.telegram_sessions (tenant_id, user_id) SELECT 't', 'u-' || (g % 400) FROM generate_series(1, 1200) g;`);
    const cmd = [process.execPath, BIN, 'dedupe', '-d', db.url, '--schema', 'tty', '--batch-size', '2'].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { encoding: 'utf8', env: cleanEnv(), timeout: 120_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^tsm dedupe: pass 1: scanning telegram_sessions for duplicate user_ids… \d+\.\d s/);
    const redrawn = r.stdout.split(CLEAR).slice(1);
    assert.ok(redrawn.some((l) => /^tsm dedupe: pass 1: [\d,]+ of 800 rows moved, [\d,]+ batch(es)?, [\d,]+ rows\/s/.test(l)), 'the moving line, redrawn in place');
    assert.match(r.stdout, /archived 800 rows of 400 user_ids/);
  });
});
