/**
 * The CLI's one signal/cleanup module (src/cli/cleanup.ts), driven by a stand-in for `process`
 * (no real signal, no real exit), and the one retry module (src/db/retry.ts). No database needed;
 * the commands that use them are tested for real elsewhere (test-write-cleanup, session-store-bench,
 * demo: SIGINT/SIGTERM against the real CLI).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { detachedCleanups, exitCodeForSignal, installCleanups, type InstalledCleanups, type SignalSource } from '../src/cli/cleanup.js';
import { backoffDelay, maxTotalDelay, plainDelay, retry, retryPolicy, sleep, type RetryPolicy } from '../src/db/retry.js';
import { waitFor } from './helpers/wait.js';

class FakeProcess extends EventEmitter implements SignalSource {
  send(sig: NodeJS.Signals): void {
    this.emit(sig, sig);
  }
}

interface Harness {
  cleanups: InstalledCleanups;
  source: FakeProcess;
  lines: string[];
  exits: number[];
}

function harness(o: { graceMs?: number; emergencyMs?: number } = {}): Harness {
  const source = new FakeProcess();
  const lines: string[] = [];
  const exits: number[] = [];
  const cleanups = installCleanups({ command: 'test-write', log: (l) => lines.push(l), exit: (c) => exits.push(c), source, ...o });
  return { cleanups, source, lines, exits };
}

/** A promise with its resolve function, to hold a cleanup open. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe('cleanup stack', () => {
  it('exit codes: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP', () => {
    assert.equal(exitCodeForSignal('SIGINT'), 130);
    assert.equal(exitCodeForSignal('SIGTERM'), 143);
    assert.equal(exitCodeForSignal('SIGHUP'), 129);
  });

  it('first signal: aborts, runs the stack from the top, says what it did, exits 128 + n', async () => {
    const h = harness();
    const order: string[] = [];
    h.cleanups.push({ what: 'stopping the server', run: async () => (order.push('server'), 'server stopped') });
    h.cleanups.push({ what: 'stopping; removing the test rows', run: async () => (order.push('rows'), 'test rows removed') });
    assert.equal(h.cleanups.signal.aborted, false);
    h.source.send('SIGTERM');
    assert.equal(h.cleanups.signal.aborted, true, 'aborted at once');
    assert.equal(h.cleanups.received(), 'SIGTERM');
    await waitFor('the exit', () => h.exits.length > 0);
    assert.deepEqual(order, ['rows', 'server'], 'the last registered runs first');
    assert.deepEqual(h.exits, [143]);
    assert.deepEqual(h.lines, [
      'tsm test-write: SIGTERM: stopping; removing the test rows; stopping the server',
      'tsm: test-write interrupted by SIGTERM: test rows removed; server stopped',
    ]);
    h.cleanups.dispose();
  });

  it("the command's own path and the signal path share one run; a finished entry leaves the stack", async () => {
    const h = harness();
    let runs = 0;
    const g = gate();
    const handle = h.cleanups.push({
      what: 'removing the rows',
      run: async () => {
        runs++;
        await g.promise;
        return 'rows removed';
      },
    });
    const own = handle.run(); // the command finishes normally …
    h.source.send('SIGINT'); // … while Ctrl-C arrives
    g.open();
    assert.equal(await own, 'rows removed');
    await waitFor('the exit', () => h.exits.length > 0);
    assert.equal(runs, 1, 'the cleanup ran once');
    assert.deepEqual(h.exits, [130]);
    assert.equal(h.cleanups.size(), 0);
    h.cleanups.dispose();
  });

  it('release() takes an entry off without running it; no entry: the signal still aborts and exits', async () => {
    const h = harness();
    let ran = false;
    h.cleanups
      .push({
        what: 'x',
        run: async () => {
          ran = true;
        },
      })
      .release();
    assert.equal(h.cleanups.size(), 0);
    h.source.send('SIGINT');
    await waitFor('the exit', () => h.exits.length > 0);
    assert.equal(ran, false);
    assert.deepEqual(h.lines, ['tsm test-write: SIGINT: stopping', 'tsm: test-write interrupted by SIGINT']);
    assert.deepEqual(h.exits, [130]);
    h.cleanups.dispose();
  });

  it('a cleanup that takes longer than the grace time: the emergency path runs, then the exit', async () => {
    const h = harness({ graceMs: 50 });
    const stuck = gate();
    let emergency = 0;
    h.cleanups.push({
      what: 'stopping; removing the test rows',
      run: async () => {
        await stuck.promise;
        return 'never';
      },
      emergencyWhat: 'cancelling our queries',
      emergency: async () => {
        emergency++;
        return 'test rows removed';
      },
    });
    h.source.send('SIGINT');
    await waitFor('the exit', () => h.exits.length > 0, { timeoutMs: 5000 });
    assert.equal(emergency, 1);
    assert.deepEqual(h.lines.slice(1), [
      'tsm test-write: cleanup is taking too long: cancelling our queries',
      'tsm: test-write interrupted by SIGINT: test rows removed',
    ]);
    assert.deepEqual(h.exits, [130]);
    stuck.open();
    await sleep(20);
    assert.deepEqual(h.exits, [130], 'exits once, even when the slow cleanup finishes later');
    h.cleanups.dispose();
  });

  it('a second signal runs the emergency path at once; a hanging emergency is cut off', async () => {
    const h = harness({ graceMs: 60_000, emergencyMs: 50 });
    h.cleanups.push({
      what: 'stopping',
      run: () => new Promise<never>(() => {}),
      emergencyWhat: 'cancelling our queries',
      emergency: () => new Promise<never>(() => {}),
    });
    h.source.send('SIGINT');
    h.source.send('SIGINT');
    await waitFor('the exit', () => h.exits.length > 0, { timeoutMs: 5000 });
    assert.deepEqual(h.lines.slice(1), [
      'tsm test-write: SIGINT again: exiting now: cancelling our queries',
      'tsm: test-write interrupted by SIGINT: the emergency cleanup did not finish in time',
    ]);
    assert.deepEqual(h.exits, [130]);
    h.cleanups.dispose();
  });

  it('a failing cleanup is reported in the final line, the others still run', async () => {
    const h = harness();
    h.cleanups.push({ what: 'a', run: async () => 'a done' });
    h.cleanups.push({
      what: 'b',
      run: async () => {
        throw new Error('connection refused\nmore');
      },
    });
    h.source.send('SIGTERM');
    await waitFor('the exit', () => h.exits.length > 0);
    assert.equal(h.lines.at(-1), 'tsm: test-write interrupted by SIGTERM: cleanup failed: connection refused; a done');
    h.cleanups.dispose();
  });

  it('dispose() removes the listeners; detached cleanups (outside the CLI) are never signalled', async () => {
    const h = harness();
    assert.equal(h.source.listenerCount('SIGINT'), 1);
    h.cleanups.dispose();
    assert.equal(h.source.listenerCount('SIGINT'), 0);
    assert.equal(h.source.listenerCount('SIGTERM'), 0);
    assert.equal(h.source.listenerCount('SIGHUP'), 0);
    const d = detachedCleanups();
    let runs = 0;
    const handle = d.push({ what: 'x', run: async () => (runs++, 'done') });
    assert.equal(await handle.run(), 'done');
    assert.equal(await handle.run(), 'done');
    assert.equal(runs, 1);
    assert.equal(d.signal.aborted, false);
  });
});

describe('retry module', () => {
  const p = (o: Partial<RetryPolicy>): RetryPolicy => ({ attempts: 5, baseDelayMs: 100, maxDelayMs: 800, jitter: 'none', ...o });

  it('exponential, capped delays; jitter equal, ±fraction or none', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map((r) => plainDelay(r, p({}))), [100, 200, 400, 800, 800]);
    assert.equal(backoffDelay(2, p({ jitter: 'equal' }), () => 0), 100);
    assert.equal(backoffDelay(2, p({ jitter: 'equal' }), () => 1), 200);
    assert.equal(Math.round(backoffDelay(2, p({ jitter: 0.2 }), () => 0)), 160);
    assert.equal(Math.round(backoffDelay(2, p({ jitter: 0.2 }), () => 1)), 240);
    assert.equal(backoffDelay(3, p({}), () => 0.5), 400);
    // The migrate engine's schedule (6 attempts, 200 ms … 3.2 s, ±20 %): the longest all pauses can take.
    assert.equal(Math.round(maxTotalDelay({ attempts: 6, baseDelayMs: 200, maxDelayMs: 3200, jitter: 0.2 })), 7440);
  });

  it('policies: defaults, overrides, and nonsense refused', () => {
    assert.deepEqual(retryPolicy(undefined), { attempts: 3, baseDelayMs: 50, maxDelayMs: 2000, jitter: 'equal' });
    assert.deepEqual(retryPolicy({ attempts: 1, baseDelayMs: undefined }), { attempts: 1, baseDelayMs: 50, maxDelayMs: 2000, jitter: 'equal' });
    assert.throws(() => retryPolicy({ attempts: 0 }), RangeError);
    assert.throws(() => retryPolicy({ attempts: 1.5 }), RangeError);
    assert.throws(() => retryPolicy({ maxDelayMs: -1 }), RangeError);
    assert.throws(() => retryPolicy({}, { ...p({}), jitter: 2 }), RangeError);
  });

  it('retry(): retries what the predicate allows, up to the attempts, then rethrows the last error', async () => {
    const seen: number[] = [];
    const value = await retry(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 3) throw new Error(`try ${attempt}`);
        return 'ok';
      },
      { policy: p({ baseDelayMs: 1, maxDelayMs: 1 }), retryOn: () => true },
    );
    assert.equal(value, 'ok');
    assert.deepEqual(seen, [1, 2, 3]);

    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw new Error('not retryable');
        },
        { policy: p({ baseDelayMs: 1 }), retryOn: () => false },
      ),
      /not retryable/,
    );
    assert.equal(calls, 1);

    calls = 0;
    await assert.rejects(
      retry(
        async (a) => {
          calls++;
          throw new Error(`attempt ${a}`);
        },
        { policy: p({ attempts: 4, baseDelayMs: 1, maxDelayMs: 1 }), retryOn: () => true },
      ),
      /attempt 4/,
    );
    assert.equal(calls, 4);
  });

  it('an abort cuts a pause short and stops the retries', async () => {
    const controller = new AbortController();
    const t0 = Date.now();
    let calls = 0;
    const run = retry(
      async () => {
        calls++;
        throw new Error('busy');
      },
      { policy: p({ baseDelayMs: 60_000, maxDelayMs: 60_000 }), retryOn: () => true, signal: controller.signal },
    );
    const settled = run.then(
      () => 'resolved',
      (e: unknown) => (e as Error).message,
    );
    await sleep(20);
    controller.abort();
    assert.equal(await settled, 'busy');
    assert.equal(calls, 1);
    assert.ok(Date.now() - t0 < 10_000, 'the 60 s pause was cut short');
    await sleep(10, controller.signal); // an aborted signal: no wait at all
  });
});
