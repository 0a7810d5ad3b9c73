/**
 * test-write never leaves a row behind and never touches one it did not create: after success,
 * after a failure, on SIGINT and SIGTERM mid-run (the real CLI, killed while it writes); --keep
 * keeps exactly its own rows.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import type { TestWriteJson } from '../src/cli/commands/test-write/run.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + fixedSchema('short'));
await db.sql('ALTER TABLE short.telegram_sessions ALTER COLUMN session_string_enc TYPE varchar(255)');
// A write that hangs: a trigger sleeps a minute on sessions of 777 characters.
await db.sql(`${fixedSchema('slow')}
  CREATE FUNCTION slow.hang() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF length(NEW.session_string_enc) = 777 THEN PERFORM pg_sleep(60); END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER hang BEFORE INSERT ON slow.telegram_sessions FOR EACH ROW EXECUTE FUNCTION slow.hang();`);

// Rows that are not the run's own, some of them in its tenant: they must survive everything.
for (const schema of ['public', 'short', 'slow']) {
  await db.sql(
    `INSERT INTO "${schema}".telegram_sessions (tenant_id, user_id, session_string_enc) VALUES
       ('app', '139883458', 'keep'), ('tsm-test', 'tsm-test:feedface:1', 'keep'), ('tsm-test', 'manual', 'keep')`,
  );
}

async function state(schema = 'public'): Promise<{ foreign: number; ours: number }> {
  const r = await db.sql(
    `SELECT count(*) FILTER (WHERE session_string_enc = 'keep')::int AS foreign,
            count(*) FILTER (WHERE session_string_enc IS DISTINCT FROM 'keep')::int AS ours
       FROM "${schema}".telegram_sessions`,
  );
  return r.rows[0];
}

/** Kills the child with `sig` once its stderr matches `when` (plus `delayMs`). */
function killWhen(when: RegExp, sig: NodeJS.Signals, delayMs = 0): (child: ChildProcess) => void {
  return (child) => {
    let err = '';
    let sent = false;
    child.stderr?.on('data', (d) => {
      err += d;
      if (!sent && when.test(err)) {
        sent = true;
        setTimeout(() => child.kill(sig), delayMs);
      }
    });
  };
}

describe('test-write cleanup', () => {
  it('after success: zero rows of its own, the others untouched', async () => {
    const r = await runTsm(['test-write', '-d', db.url, '--lengths', '68,800', '--rounds', '5']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /test rows removed \(7 rows, tenant tsm-test\)/);
    assert.deepEqual(await state(), { foreign: 3, ours: 0 });
  });

  it('after a failure (some lengths saved, some too long): zero rows of its own', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'short', '--lengths', '68,255,256,1000', '--rounds', '2']);
    assert.equal(r.code, 1);
    assert.equal(r.json<TestWriteJson>().results.filter((x) => x.ok).length, 2, 'two lengths were written');
    assert.deepEqual(await state('short'), { foreign: 3, ours: 0 });
  });

  it('--keep: exactly its own rows stay (one per length, one per race user), with the run id in their user ids', async () => {
    const r = await runTsm(['test-write', '-d', db.url, '--lengths', '68,268', '--rounds', '3', '--keep']);
    assert.equal(r.code, 0, r.stderr);
    const m = /user ids (tsm-test:[0-9a-f]{8}:)1 … tsm-test:[0-9a-f]{8}:5; remove them with:\n {2}(DELETE FROM .*;)\n/.exec(r.stdout);
    assert.ok(m, r.stdout);
    const rows = await db.sql(`SELECT user_id FROM telegram_sessions WHERE session_string_enc <> 'keep' ORDER BY user_id`);
    assert.deepEqual(rows.rows.map((x) => x.user_id), [1, 2, 3, 4, 5].map((i) => m[1] + i));
    // The printed DELETE removes them, and only them.
    await db.sql(m[2]!);
    assert.deepEqual(await state(), { foreign: 3, ours: 0 });
  });

  it('SIGINT while saving 3,000,000-character sessions: exit 130, zero rows of its own', async () => {
    const r = await runTsm(['test-write', '-d', db.url, '--lengths', Array(8).fill('3000000').join(',')], {
      onSpawn: killWhen(/saving a session of 3,000,000 characters[^]*saving a session of 3,000,000 characters/, 'SIGINT'),
    });
    assert.equal(r.code, 130, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /SIGINT: stopping; removing the test rows/);
    assert.match(r.stderr, /\ntsm: test-write interrupted by SIGINT: test rows removed\n$/);
    assert.deepEqual(await state(), { foreign: 3, ours: 0 });
  });

  it('SIGINT in the middle of the race (writes in flight): exit 130, zero rows of its own', async () => {
    const r = await runTsm(['test-write', '-d', db.url, '--lengths', '68', '--rounds', '100000', '--concurrency', '16'], {
      onSpawn: killWhen(/race: 16 connections/, 'SIGINT', 400),
    });
    assert.equal(r.code, 130, r.stdout + r.stderr);
    assert.deepEqual(await state(), { foreign: 3, ours: 0 });
  });

  it('SIGINT while a write hangs: after the 10 s grace tsm cancels its own statement, then removes its rows', async () => {
    const t0 = Date.now();
    const r = await runTsm(['test-write', '-d', db.url, '--schema', 'slow', '--lengths', '68,777'], {
      onSpawn: killWhen(/saving a session of 777 characters/, 'SIGINT', 300),
    });
    const took = Date.now() - t0;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /cleanup is taking too long: cancelling our queries/);
    assert.ok(took < 30_000, `took ${took} ms: the sleeping statement was cancelled, not waited for`);
    assert.deepEqual(await state('slow'), { foreign: 3, ours: 0 });
    const stuck = await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%upsert_telegram_session%' AND state = 'active'`);
    assert.equal(stuck.rows[0].n, 0, 'no statement of the run is left running');
  });

  it('SIGTERM: exit 143, zero rows of its own', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--lengths', '68', '--rounds', '100000'], {
      onSpawn: killWhen(/race: 8 connections/, 'SIGTERM', 200),
    });
    assert.equal(r.code, 143, r.stdout + r.stderr);
    // one whole JSON document (docs/output.md): the interruption, not a half report
    assert.deepEqual(r.json<{ ok: boolean; error: { code: string } }>().error.code, 'interrupted');
    assert.deepEqual(await state(), { foreign: 3, ours: 0 });
  });
});
