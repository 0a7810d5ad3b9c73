/**
 * Ctrl-C during a fleet run (issue 12): no new target starts, the running one reaches its safe
 * point, each target's state is reported (the table on stdout, one line per target with --json on
 * stderr), exit 130; a rerun is the resume.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { catalogOf, fleetDatabase, fleetPrefix, historyOf, targetFile, type FleetDb } from './helpers/fleet.js';
import { SHIPPED } from './helpers/migrate.js';
import { settle, sleep, waitFor } from './helpers/wait.js';

await createTestDatabase(import.meta.url);

/** Holds ACCESS EXCLUSIVE on the target's table in an open transaction until release(). */
async function holdTable(db: FleetDb): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: db.url, application_name: 'tsm-test-blocker' });
  c.on('error', () => {});
  await c.connect();
  await c.query('BEGIN');
  await c.query('LOCK TABLE public.telegram_sessions IN ACCESS EXCLUSIVE MODE');
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await c.query('COMMIT').catch(() => {});
      await c.end().catch(() => {});
    },
  };
}

/** Whether a tsm connection on `db` is waiting for a lock. */
async function tsmWaiting(db: FleetDb): Promise<boolean> {
  const r = await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm' AND wait_event_type = 'Lock'`);
  return r.rows[0].n > 0;
}

for (const json of [false, true]) {
  describe(`Ctrl-C during migrate up --targets${json ? ' --json' : ''}`, () => {
    it('stops starting targets, lets the running one finish, reports each target, exits 130; a rerun resumes', async () => {
      const p = fleetPrefix(json ? 'sigj' : 'sig');
      const dbs: FleetDb[] = [];
      for (let i = 1; i <= 4; i++) dbs.push(await fleetDatabase(`${p}_${i}`));
      const before = await Promise.all(dbs.slice(1).map(catalogOf));
      const file = targetFile(dbs.map((d) => d.url));
      const blocker = await holdTable(dbs[0]!);
      try {
        let child: { kill(sig: NodeJS.Signals): boolean } | undefined;
        const run = settle(
          runTsm(['migrate', 'up', '--targets', file, '--parallel', '1', '--lock-timeout', '60s', ...(json ? ['--json'] : [])], {
            onSpawn: (c) => (child = c),
          }),
        );
        await waitFor('the first target waits for the table lock', () => tsmWaiting(dbs[0]!), { timeoutMs: 30_000 });
        child!.kill('SIGINT');
        // The running target reaches its safe point once the lock is free (with an engine that
        // cancels on the signal, sooner); either way no other target may start.
        await sleep(300);
        await blocker.release();
        const r = await run;
        assert.ok(r.ok);
        const out = r.value;
        assert.equal(out.code, 130, out.stderr);
        assert.match(out.stderr, /tsm: migrate up interrupted by SIGINT: 4 targets: [01] ok, [01] failed, 0 unreachable, 3 skipped; a rerun resumes/);
        if (json) {
          for (const d of dbs.slice(1)) assert.match(out.stderr, new RegExp(`tsm migrate up: ${d.name}: skipped: not started: interrupted`));
        } else {
          for (const d of dbs.slice(1)) assert.match(out.stdout, new RegExp(`${d.name}\\s+│ \\S+\\s+│ skipped │\\s+│ not started: interrupted`));
        }
        assert.deepEqual(await Promise.all(dbs.slice(1).map(catalogOf)), before, 'no other target started');
      } finally {
        await blocker.release();
      }

      const again = await runTsm(['migrate', 'up', '--targets', file, '--parallel', '2', '--json']);
      assert.equal(again.code, 0, again.stderr);
      for (const d of dbs) assert.deepEqual(await historyOf(d), SHIPPED, d.name);
    });
  });
}
