/**
 * `tsm migrate up --targets` over real databases (issue 12): a mixed fleet with --on-error
 * continue, the default --on-error stop with --parallel 1, a failing canary, and two fleet runs at
 * once over the same targets. Targets are databases this file creates on the test server.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { catalogOf, fleetDatabase, fleetPrefix, hasUniqueIndex, historyOf, targetFile, type FleetDb } from './helpers/fleet.js';
import { SHIPPED } from './helpers/migrate.js';
import { freePort } from './helpers/topology.js';
import { settle } from './helpers/wait.js';

await createTestDatabase(import.meta.url);

interface FleetJson {
  ok: boolean;
  summary: { ok: number; failed: number; unreachable: number; skipped: number };
  targets: { name: string; url: string; status: string; exit_code: number | null; result: Record<string, unknown> | null }[];
}

const byName = (doc: FleetJson): Map<string, FleetJson['targets'][number]> => new Map(doc.targets.map((t) => [t.name, t]));

describe('tsm migrate up --targets', () => {
  it('6 targets (4 pre-fix, 1 with duplicates, 1 unreachable) with --on-error continue --json: exit 1; the 4 migrated, the duplicates one failed and unchanged', async () => {
    const p = fleetPrefix('mix');
    const good: FleetDb[] = [];
    for (let i = 1; i <= 4; i++) good.push(await fleetDatabase(`${p}_t${i}`));
    const dup = await fleetDatabase(`${p}_dup`, { dupUsers: 3 });
    const port = await freePort();
    const before = await catalogOf(dup);
    const file = targetFile([
      '# a fleet of six',
      ...good.slice(0, 2).map((d) => d.url),
      `dup ${dup.url}`,
      `closed postgres://postgres:secret-pw@127.0.0.1:${port}/nowhere`,
      ...good.slice(2).map((d, i) => `tenant-${i + 3} ${d.url}`),
    ]);

    const r = await runTsm(['migrate', 'up', '--targets', file, '--on-error', 'continue', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const doc = r.json<FleetJson>();
    assert.deepEqual(Object.keys(doc), ['ok', 'summary', 'targets']);
    assert.equal(doc.ok, false);
    assert.deepEqual(doc.summary, { ok: 4, failed: 1, unreachable: 1, skipped: 0 });
    assert.deepEqual(
      doc.targets.map((t) => [t.name, t.status, t.exit_code]),
      [
        [`${p}_t1`, 'ok', 0],
        [`${p}_t2`, 'ok', 0],
        ['dup', 'failed', 1],
        ['closed', 'unreachable', 3],
        ['tenant-3', 'ok', 0],
        ['tenant-4', 'ok', 0],
      ],
    );
    for (const t of doc.targets) assert.deepEqual(Object.keys(t), ['name', 'url', 'status', 'exit_code', 'result']);
    // The per-target result is migrate up's own document; a failure is the error document.
    const t1 = byName(doc).get(`${p}_t1`)!;
    assert.deepEqual((t1.result!.steps as { name: string }[]).map((s) => s.name), SHIPPED);
    const d = byName(doc).get('dup')!;
    assert.equal((d.result!.error as { code: string }).code, 'duplicates', 'the duplicates refusal has its own code');
    assert.match((d.result!.error as { message: string }).message, /more than one row.*tsm dedupe/);
    const c = byName(doc).get('closed')!;
    assert.equal((c.result!.error as { code: string }).code, 'connection');
    // URLs masked, everywhere.
    assert.equal(c.url, `postgres://postgres:***@127.0.0.1:${port}/nowhere`);
    assert.doesNotMatch(r.stdout + r.stderr, /secret-pw/);

    for (const db of good) {
      assert.equal(await hasUniqueIndex(db), true, `${db.name}: unique index`);
      assert.deepEqual(await historyOf(db), SHIPPED);
    }
    assert.equal(await catalogOf(dup), before, 'the duplicates target is unchanged');

    // doctor over the four migrated ones: all ok.
    const doctor = await runTsm(['doctor', '--targets', targetFile(good.map((g) => g.url)), '--json']);
    assert.equal(doctor.code, 0, doctor.stderr);
    const dd = doctor.json<FleetJson>();
    assert.deepEqual(dd.summary, { ok: 4, failed: 0, unreachable: 0, skipped: 0 });
    for (const t of dd.targets) {
      const summary = (t.result as { summary: { fail: number; warn: number } }).summary;
      assert.deepEqual([summary.fail, summary.warn], [0, 0], `${t.name}: doctor all ok`);
    }

    // The human table: one row per target with its masked URL, and the total.
    const human = await runTsm(['migrate', 'up', '--targets', file, '--on-error', 'continue']);
    assert.equal(human.code, 1);
    assert.match(human.stdout, /closed\s+│ postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/nowhere\s+│ unreachable │ 3/);
    assert.match(human.stdout, /tenant-3\s+│ \S+\s+│ ok\s+│ 0\s+│ up to date, nothing to do/);
    assert.match(human.stdout, /6 targets: 4 ok, 1 failed, 1 unreachable, 0 skipped/);
    assert.doesNotMatch(human.stderr, /\d+\/6 done/, 'no progress line when stderr is not a terminal');
  });

  it('default --on-error stop with --parallel 1: after the first failure no target starts; the ones after it are unchanged', async () => {
    const p = fleetPrefix('stop');
    const first = await fleetDatabase(`${p}_a`);
    const dup = await fleetDatabase(`${p}_b`, { dupUsers: 1 });
    const later = [await fleetDatabase(`${p}_c`), await fleetDatabase(`${p}_d`)];
    const before = await Promise.all(later.map(catalogOf));
    const file = targetFile([first, dup, ...later].map((d) => d.url));

    const r = await runTsm(['migrate', 'up', '--targets', file, '--parallel', '1', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const doc = r.json<FleetJson>();
    assert.deepEqual(
      doc.targets.map((t) => [t.status, t.exit_code]),
      [
        ['ok', 0],
        ['failed', 1],
        ['skipped', null],
        ['skipped', null],
      ],
    );
    assert.deepEqual(doc.summary, { ok: 1, failed: 1, unreachable: 0, skipped: 2 });
    assert.equal(doc.targets[2]!.result, null);
    assert.match(r.stderr, new RegExp(`${p}_b was not ok: no new target starts \\(--on-error stop\\)`));
    assert.deepEqual(await Promise.all(later.map(catalogOf)), before, 'targets after the failure are unchanged');
    assert.deepEqual(await historyOf(first), SHIPPED);

    const human = await runTsm(['migrate', 'up', '--targets', file, '--parallel', '1']);
    assert.equal(human.code, 1);
    assert.match(human.stdout, /not started: stopped after \S+_b was not ok/);
    assert.match(human.stdout, /stopped after \S+_b was not ok \(--on-error stop\): no new target started; rerun/);
  });

  it('--canary 1 whose canary fails: nothing else starts (even with --on-error continue)', async () => {
    const p = fleetPrefix('can');
    const dup = await fleetDatabase(`${p}_canary`, { dupUsers: 2 });
    const rest = [await fleetDatabase(`${p}_x`), await fleetDatabase(`${p}_y`), await fleetDatabase(`${p}_z`)];
    const before = await Promise.all(rest.map(catalogOf));
    const file = targetFile([dup, ...rest].map((d) => d.url));

    const r = await runTsm(['migrate', 'up', '--targets', file, '--canary', '1', '--on-error', 'continue', '--parallel', '4', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const doc = r.json<FleetJson>();
    assert.deepEqual(doc.targets.map((t) => t.status), ['failed', 'skipped', 'skipped', 'skipped']);
    assert.match(r.stderr, /canary \S+_canary was not ok: nothing else starts/);
    assert.deepEqual(await Promise.all(rest.map(catalogOf)), before);

    // A canary that passes lets the rest run.
    const ok = await runTsm(['migrate', 'up', '--targets', targetFile(rest.map((d) => d.url)), '--canary', '1', '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(ok.json<FleetJson>().summary, { ok: 3, failed: 0, unreachable: 0, skipped: 0 });
  });

  it('two fleet runs at once over the same targets: every target migrated once, both exit 0', async () => {
    const p = fleetPrefix('two');
    const dbs: FleetDb[] = [];
    for (let i = 1; i <= 5; i++) dbs.push(await fleetDatabase(`${p}_${i}`));
    const file = targetFile(dbs.map((d) => d.url));

    const one = settle(runTsm(['migrate', 'up', '--targets', file, '--parallel', '3', '--json']));
    const two = settle(runTsm(['migrate', 'up', '--targets', file, '--parallel', '3', '--json']));
    const [a, b] = await Promise.all([one, two]);
    assert.ok(a.ok && b.ok);
    assert.equal(a.value.code, 0, a.value.stderr);
    assert.equal(b.value.code, 0, b.value.stderr);
    const docs = [a.value.json<FleetJson>(), b.value.json<FleetJson>()];
    for (const db of dbs) {
      assert.deepEqual(await historyOf(db), SHIPPED, `${db.name}: each migration recorded once`);
      const applied = docs.flatMap((d) => (byName(d).get(db.name)!.result!.steps as { name: string }[]).map((s) => s.name));
      assert.deepEqual([...applied].sort(), [...SHIPPED].sort(), `${db.name}: applied once in all, by one run or the other`);
      assert.equal(await hasUniqueIndex(db), true);
    }
  });
});
