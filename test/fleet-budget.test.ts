/**
 * The connection budget against a real server (issue 12): 50 databases, `migrate up --targets
 * --parallel 8` migrates every one, and the connections tsm holds on the server (sampled from
 * pg_stat_activity during the run) never exceed the budget it announced; per database never more
 * than what one target is counted for. Then explicit, binding budgets for doctor and test-write.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { runTsm, type RunResult } from './helpers/cli.js';
import { createTestDatabase, serverUrl } from './helpers/db.js';
import { fleetDatabase, fleetPrefix, historyOf, targetFile, type FleetDb } from './helpers/fleet.js';
import { SHIPPED } from './helpers/migrate.js';
import { settle } from './helpers/wait.js';

await createTestDatabase(import.meta.url);

interface Peak {
  total: number;
  perDb: number;
  samples: number;
}

/** Runs `run` while sampling tsm's connections to the databases named `prefix…` every few ms. */
async function sampled(prefix: string, run: () => Promise<RunResult>): Promise<{ r: RunResult; peak: Peak }> {
  const c = new pg.Client({ connectionString: serverUrl(), application_name: 'tsm-test-sampler' });
  await c.connect();
  const peak: Peak = { total: 0, perDb: 0, samples: 0 };
  let done = false;
  const sampler = settle(
    (async () => {
      while (!done) {
        const q = await c.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tsm' AND datname LIKE $1 GROUP BY datname`,
          [prefix + '%'],
        );
        const counts = q.rows.map((x) => x.n);
        peak.total = Math.max(peak.total, counts.reduce((a, b) => a + b, 0));
        peak.perDb = Math.max(peak.perDb, ...counts, 0);
        peak.samples++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })(),
  );
  let r: RunResult;
  try {
    r = await run();
  } finally {
    done = true;
  }
  const s = await sampler;
  await c.end();
  if (!s.ok) throw s.error;
  return { r, peak };
}

describe('fleet connection budget', () => {
  const p = fleetPrefix('budget');
  const dbs: FleetDb[] = [];

  it('50 databases, migrate up --parallel 8: every one migrated; tsm never held more connections than its budget', async (t) => {
    for (let i = 1; i <= 50; i++) dbs.push(await fleetDatabase(`${p}_${String(i).padStart(2, '0')}`, { rows: 10 }));
    const file = targetFile(dbs.map((d) => d.url));
    const { r, peak } = await sampled(p, () => runTsm(['migrate', 'up', '--targets', file, '--parallel', '8', '--json'], { timeoutMs: 600_000 }));
    assert.equal(r.code, 0, r.stderr);
    const budget = Number(/connection budget (\d+) \(half of the \d+ free connections/.exec(r.stderr)?.[1]);
    assert.ok(budget >= 1, `the budget is announced on stderr: ${r.stderr.slice(0, 300)}`);
    assert.deepEqual(r.json<{ summary: unknown }>().summary, { ok: 50, failed: 0, unreachable: 0, skipped: 0 });
    for (const db of dbs) assert.deepEqual(await historyOf(db), SHIPPED, db.name);
    t.diagnostic(`budget ${budget}; peak ${peak.total} connections, ${peak.perDb} on one database; ${peak.samples} samples`);
    assert.ok(peak.samples > 10, `sampled ${peak.samples} times`);
    assert.ok(peak.total > 0, 'the sampler saw tsm connected');
    assert.ok(peak.total <= budget, `peak ${peak.total} connections, budget ${budget}`);
    assert.ok(peak.total <= 8 * 3, `peak ${peak.total}: at most --parallel × 3`);
    assert.ok(peak.perDb <= 3, `one migrate up target held ${peak.perDb} connections (counted for 3)`);
  });

  it('an explicit --connection-budget binds: doctor (2 per target) over 50 with --connection-budget 4', async (t) => {
    const file = targetFile(dbs.map((d) => d.url));
    const { r, peak } = await sampled(p, () => runTsm(['doctor', '--targets', file, '--parallel', '8', '--connection-budget', '4', '--json']));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.json<{ summary: unknown }>().summary, { ok: 50, failed: 0, unreachable: 0, skipped: 0 });
    assert.ok(peak.total > 0, 'the sampler saw tsm connected');
    t.diagnostic(`peak ${peak.total} connections, ${peak.perDb} on one database; ${peak.samples} samples`);
    assert.ok(peak.total <= 4, `peak ${peak.total} connections, budget 4`);
    assert.ok(peak.perDb <= 2, `one doctor target held ${peak.perDb} connections (counted for 2)`);
  });

  it('test-write (--concurrency + 2 per target) with --connection-budget 8: two targets at a time, each within its count', async (t) => {
    const file = targetFile(dbs.slice(0, 8).map((d) => d.url));
    const { r, peak } = await sampled(p, () =>
      runTsm(['test-write', '--targets', file, '--concurrency', '2', '--rounds', '3', '--lengths', '68', '--parallel', '8', '--connection-budget', '8', '--json']),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.json<{ summary: unknown }>().summary, { ok: 8, failed: 0, unreachable: 0, skipped: 0 });
    assert.ok(peak.total > 0, 'the sampler saw tsm connected');
    t.diagnostic(`peak ${peak.total} connections, ${peak.perDb} on one database; ${peak.samples} samples`);
    assert.ok(peak.total <= 8, `peak ${peak.total} connections, budget 8`);
    assert.ok(peak.perDb <= 4, `one test-write target held ${peak.perDb} connections (counted for 4)`);
  });
});
