/**
 * The fleet engine's scheduling (src/fleet/engine.ts) with stand-in work, no database: --parallel,
 * the per-server connection budget, canary, --on-error stop/continue, Ctrl-C, and a slow budget
 * probe of one server that must not delay the others. The same behaviour against real databases:
 * test/fleet-migrate.test.ts and test/fleet-budget.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runFleet, type FleetEvent, type FleetTarget, type TargetRun } from '../src/fleet/engine.js';
import { settle, sleep } from './helpers/wait.js';

const targets = (n: number, server = (_i: number): string => 's1'): FleetTarget[] =>
  Array.from({ length: n }, (_, i) => ({ name: `t${i + 1}`, url: `postgres://x@h/t${i + 1}`, server: server(i) }));

/** Work that takes `ms` and exits with `code(name)`; records how many ran at once, overall and per server. */
function work(ms: number, code: (name: string) => number = () => 0) {
  let running = 0;
  const perServer = new Map<string, number>();
  const rec = { peak: 0, peakServer: new Map<string, number>(), order: [] as string[] };
  const run = async (t: FleetTarget): Promise<TargetRun> => {
    rec.order.push(t.name);
    running++;
    perServer.set(t.server, (perServer.get(t.server) ?? 0) + 1);
    rec.peak = Math.max(rec.peak, running);
    rec.peakServer.set(t.server, Math.max(rec.peakServer.get(t.server) ?? 0, perServer.get(t.server)!));
    await sleep(ms);
    running--;
    perServer.set(t.server, perServer.get(t.server)! - 1);
    const exitCode = code(t.name);
    return { exitCode, result: { name: t.name }, summary: `exit ${exitCode}` };
  };
  return { run, rec };
}

describe('fleet engine', () => {
  it('--parallel bounds the targets at once; every target runs once, in order; all ok → ok', async () => {
    const w = work(20);
    const r = await runFleet({ targets: targets(10), parallel: 3, canary: 0, onError: 'continue', weight: 1, budget: async () => 100, run: w.run });
    assert.equal(r.ok, true);
    assert.equal(w.rec.peak, 3);
    assert.equal(r.peak.running, 3);
    assert.deepEqual(w.rec.order, targets(10).map((t) => t.name));
    assert.deepEqual(r.outcomes.map((o) => o.status), Array(10).fill('ok'));
    assert.deepEqual(r.outcomes[4]!.result, { name: 't5' });
  });

  it('the connection budget bounds the targets of one server by their weight; other servers have their own', async () => {
    const w = work(20);
    // 12 targets alternating over two servers; weight 3, budget 7 → 2 at a time per server.
    const r = await runFleet({
      targets: targets(12, (i) => (i % 2 === 0 ? 'a' : 'b')),
      parallel: 8,
      canary: 0,
      onError: 'continue',
      weight: 3,
      budget: async () => 7,
      run: w.run,
    });
    assert.equal(r.ok, true);
    assert.equal(w.rec.peakServer.get('a'), 2);
    assert.equal(w.rec.peakServer.get('b'), 2);
    assert.equal(r.peak.connections.a, 6);
    assert.equal(r.peak.connections.b, 6);
    assert.equal(w.rec.peak, 4);
  });

  it('a budget below the weight still runs the targets, one at a time', async () => {
    const w = work(10);
    const r = await runFleet({ targets: targets(4), parallel: 4, canary: 0, onError: 'continue', weight: 10, budget: async () => 3, run: w.run });
    assert.equal(r.ok, true);
    assert.equal(w.rec.peak, 1);
  });

  it('the budget is asked once per server, and a slow answer for one server does not hold the others back', async () => {
    const asked: string[] = [];
    const startedAt = new Map<string, number>();
    const t0 = Date.now();
    const r = await runFleet({
      targets: targets(6, (i) => (i < 3 ? 'slow' : 'fast')),
      parallel: 6,
      canary: 0,
      onError: 'continue',
      weight: 1,
      budget: async (server) => {
        asked.push(server);
        if (server === 'slow') await sleep(400);
        return 10;
      },
      run: async (t) => {
        startedAt.set(t.name, Date.now() - t0);
        await sleep(5);
        return { exitCode: 0, result: null, summary: 'ok' };
      },
    });
    assert.equal(r.ok, true);
    assert.deepEqual(asked.sort(), ['fast', 'slow']);
    for (const name of ['t4', 't5', 't6']) assert.ok(startedAt.get(name)! < 300, `${name} started at ${startedAt.get(name)} ms, before the slow server answered`);
    for (const name of ['t1', 't2', 't3']) assert.ok(startedAt.get(name)! >= 390, `${name} waited for its server's budget`);
  });

  it('a budget probe that rejects falls back to --parallel × weight (the targets still run)', async () => {
    const w = work(5);
    const r = await runFleet({
      targets: targets(3),
      parallel: 2,
      canary: 0,
      onError: 'continue',
      weight: 2,
      budget: () => Promise.reject(new Error('no')),
      run: w.run,
    });
    assert.equal(r.ok, true);
    assert.equal(w.rec.peak, 2);
  });

  it('exit codes map to statuses: 0 ok, 3 unreachable, anything else failed; a rejected run is failed with exit 1', async () => {
    const codes: Record<string, number> = { t1: 0, t2: 3, t3: 1, t4: 2 };
    const r = await runFleet({
      targets: targets(5),
      parallel: 2,
      canary: 0,
      onError: 'continue',
      weight: 1,
      budget: async () => 10,
      run: async (t) => {
        if (t.name === 't5') throw new Error('boom\nsecond line');
        return { exitCode: codes[t.name]!, result: null, summary: '' };
      },
    });
    assert.equal(r.ok, false);
    assert.deepEqual(
      r.outcomes.map((o) => [o.name, o.status, o.exit_code]),
      [
        ['t1', 'ok', 0],
        ['t2', 'unreachable', 3],
        ['t3', 'failed', 1],
        ['t4', 'failed', 2],
        ['t5', 'failed', 1],
      ],
    );
    assert.equal(r.outcomes[4]!.summary, 'unexpected error: boom');
    assert.equal(r.stopped, null);
  });

  it("--on-error stop: after a target that is not ok no new one starts, running ones finish, the rest are skipped", async () => {
    const events: FleetEvent[] = [];
    // parallel 2: t1 (slow, ok) and t2 (fails fast) start together; t1 must still finish.
    const r = await runFleet({
      targets: targets(6),
      parallel: 2,
      canary: 0,
      onError: 'stop',
      weight: 1,
      budget: async () => 10,
      run: async (t) => {
        await sleep(t.name === 't1' ? 150 : 10);
        return { exitCode: t.name === 't2' ? 1 : 0, result: null, summary: '' };
      },
      onEvent: (e) => events.push(e),
    });
    assert.deepEqual(r.outcomes.map((o) => o.status), ['ok', 'failed', 'skipped', 'skipped', 'skipped', 'skipped']);
    assert.deepEqual(r.stopped, { kind: 'stop', after: 't2' });
    assert.equal(r.outcomes[2]!.exit_code, null);
    assert.match(r.outcomes[2]!.summary, /not started: stopped after t2/);
    assert.equal(events.filter((e) => e.type === 'start').length, 2);
  });

  it('an unreachable target stops the run too under --on-error stop', async () => {
    const r = await runFleet({
      targets: targets(3),
      parallel: 1,
      canary: 0,
      onError: 'stop',
      weight: 1,
      budget: async () => 10,
      run: async (t) => ({ exitCode: t.name === 't1' ? 3 : 0, result: null, summary: '' }),
    });
    assert.deepEqual(r.outcomes.map((o) => o.status), ['unreachable', 'skipped', 'skipped']);
  });

  it('--canary N: the first N run before any other; a canary that is not ok stops everything, even with --on-error continue', async () => {
    const w = work(30);
    const events: string[] = [];
    const ok = await runFleet({
      targets: targets(6),
      parallel: 4,
      canary: 2,
      onError: 'continue',
      weight: 1,
      budget: async () => 10,
      run: w.run,
      onEvent: (e) => {
        if (e.type !== 'stop') events.push(`${e.type} ${e.target.name}`);
      },
    });
    assert.equal(ok.ok, true);
    assert.deepEqual(events.slice(0, 2).sort(), ['start t1', 'start t2']);
    // t3… start only after both canaries finished; then they run 4 at a time.
    assert.deepEqual(events.slice(2, 4).sort(), ['done t1', 'done t2']);
    assert.equal(w.rec.peak, 4);

    const started: string[] = [];
    const bad = await runFleet({
      targets: targets(5),
      parallel: 4,
      canary: 1,
      onError: 'continue',
      weight: 1,
      budget: async () => 10,
      run: async (t) => {
        started.push(t.name);
        return { exitCode: t.name === 't1' ? 1 : 0, result: null, summary: '' };
      },
    });
    assert.deepEqual(started, ['t1']);
    assert.deepEqual(bad.stopped, { kind: 'canary', after: 't1' });
    assert.deepEqual(bad.outcomes.map((o) => o.status), ['failed', 'skipped', 'skipped', 'skipped', 'skipped']);
    assert.match(bad.outcomes[1]!.summary, /canary t1 was not ok/);
  });

  it('canaries run one wave with --parallel, then the rest; failures after the canaries follow --on-error', async () => {
    const r = await runFleet({
      targets: targets(5),
      parallel: 1,
      canary: 1,
      onError: 'continue',
      weight: 1,
      budget: async () => 10,
      run: async (t) => ({ exitCode: t.name === 't3' ? 1 : 0, result: null, summary: '' }),
    });
    assert.deepEqual(r.outcomes.map((o) => o.status), ['ok', 'ok', 'failed', 'ok', 'ok']);
  });

  it('Ctrl-C (the signal): no new target starts, the running ones finish, the rest are skipped as interrupted', async () => {
    const controller = new AbortController();
    const started: string[] = [];
    const p = settle(
      runFleet({
        targets: targets(8),
        parallel: 2,
        canary: 0,
        onError: 'continue',
        weight: 1,
        budget: async () => 10,
        signal: controller.signal,
        run: async (t) => {
          started.push(t.name);
          if (t.name === 't3') controller.abort();
          await sleep(50);
          return { exitCode: 0, result: null, summary: '' };
        },
      }),
    );
    const r = await p;
    assert.ok(r.ok);
    const run = r.value;
    assert.deepEqual(started, ['t1', 't2', 't3']);
    assert.deepEqual(run.stopped, { kind: 'interrupted' });
    assert.deepEqual(run.outcomes.map((o) => o.status), ['ok', 'ok', 'ok', 'skipped', 'skipped', 'skipped', 'skipped', 'skipped']);
    assert.equal(run.outcomes[3]!.summary, 'not started: interrupted');
    assert.equal(run.ok, false);
  });

  it('a signal aborted before the start runs nothing; no targets at all is an empty, ok run', async () => {
    const controller = new AbortController();
    controller.abort();
    const r = await runFleet({ targets: targets(2), parallel: 2, canary: 0, onError: 'continue', weight: 1, budget: async () => 1, signal: controller.signal, run: () => Promise.reject(new Error('must not run')) });
    assert.deepEqual(r.outcomes.map((o) => o.status), ['skipped', 'skipped']);
    const empty = await runFleet({ targets: [], parallel: 2, canary: 0, onError: 'continue', weight: 1, budget: async () => 1, run: () => Promise.reject(new Error('must not run')) });
    assert.deepEqual([empty.ok, empty.outcomes.length], [true, 0]);
  });
});
