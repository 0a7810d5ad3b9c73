/**
 * A partitioned index build interrupted for real (issue 11): the server killed mid-build
 * (`pg_ctl stop -m immediate` on a private cluster), and Ctrl-C to the CLI mid-build. Both leave
 * the parent index ON ONLY and a partition's index half built; the next `up` finishes from there
 * (the leftover dropped and rebuilt, or attached when the orphaned build completed), the history is
 * complete, and `down` then `up` again work. The builds are held in "waiting for old snapshots" by
 * a transaction's snapshot, so the interruption always lands inside a partition's build.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { SHIPPED, lastLine, migrate, stderrWatcher } from './helpers/migrate.js';
import { coverage, partitionedPreFix, rowsDigest, treeIndexes } from './helpers/partitioned.js';
import { requirePart, startServer } from './helpers/topology.js';
import { outcome, settle, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
const PARENT = 'telegram_sessions_user_id_unique';

const SEED = `INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
  SELECT 't-1', 'u-' || g, repeat(md5(g::text), 8), 'k1', 'active' FROM generate_series(1, 20000) g`;

/**
 * `c` holds a snapshot (REPEATABLE READ, one statement) and no lock on any table: concurrent index
 * builds wait for it at their end ("waiting for old snapshots"), while 0001–0003 go through.
 */
async function holdSnapshot(c: pg.Client): Promise<pg.Client> {
  c.on('error', () => {});
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await c.query('SELECT 1');
  return c;
}

/** The phase of the concurrent build of `index` running in this database (null: none). */
async function buildPhase(query: (sql: string, values: unknown[]) => Promise<pg.QueryResult>, index: string): Promise<string | null> {
  const r = await query(
    `SELECT p.phase FROM pg_stat_progress_create_index p JOIN pg_class ic ON ic.oid = p.index_relid
      WHERE p.datname = current_database() AND ic.relname = $1`,
    [index],
  );
  return (r.rows[0]?.phase as string | undefined) ?? null;
}

const history = async (query: (sql: string) => Promise<pg.QueryResult>): Promise<string[]> =>
  (await query(`SELECT name FROM tsm_migrations ORDER BY run_on, id`)).rows.map((r) => r.name as string);

describe('a partitioned index build interrupted mid-way', () => {
  it('the server killed mid-build (immediate shutdown): the next up drops the half-built index and finishes; down, up again', { skip: requirePart('postgres') }, async () => {
    const srv = await startServer();
    await srv.sql('CREATE DATABASE app');
    const url = srv.url('app');
    const q = (sql: string, values?: unknown[]): Promise<pg.QueryResult> => srv.sql(sql, values, 'app');
    await q(partitionedPreFix('public', 'hash', 4));
    await q(SEED);
    const conn = new pg.Client(srv.adminConfig('app'));
    await conn.connect();
    const holder = await holdSnapshot(conn);

    const w = stderrWatcher();
    const run = settle(migrate(url, ['up'], { onSpawn: w.onSpawn, timeoutMs: 120_000 }));
    await w.until((s) => s.includes('step 2 of 9: build telegram_sessions_p0_user_id_unique'), 60_000);
    await waitFor('the first partition build waiting for old snapshots', async () => (await buildPhase(q, 'telegram_sessions_p0_user_id_unique'))?.startsWith('waiting'), {
      timeoutMs: 60_000,
    });
    await srv.stop({ mode: 'immediate' });
    const crashed = await outcome(run);
    assert.notEqual(crashed.code, 0, 'the run failed');
    assert.ok(crashed.code !== null, `exited (not killed): ${crashed.stderr}`);
    assert.match(lastLine(crashed.stderr), /^tsm: /, 'one line, no stack trace');
    assert.doesNotMatch(crashed.stderr, /\n\s+at /);
    await holder.end().catch(() => {});

    await srv.start();
    assert.deepEqual(await history(q), SHIPPED.slice(0, 3), '0004 not recorded');
    const left = await (async () => {
      const r = await q(
        `SELECT ic.relname AS name, i.indisvalid AS valid, (SELECT pc.relname FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent WHERE h.inhrelid = i.indexrelid) AS parent
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE ic.relname LIKE 'telegram_sessions%' ORDER BY 1`,
      );
      return r.rows;
    })();
    assert.deepEqual(left, [
      { name: 'telegram_sessions_p0_user_id_unique', valid: false, parent: null },
      { name: PARENT, valid: false, parent: null },
    ], 'the parent index ON ONLY and a half-built partition index');

    const again = await migrate(url, ['up', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const notes = (again.json().steps as { name: string; notes: string[] }[]).find((s) => s.name === '0004_user_id_unique_index')!.notes;
    assert.ok(
      notes.includes('step 1 of 9: telegram_sessions_p0_user_id_unique on telegram_sessions_p0 is INVALID (left by a failed or interrupted build): drop it, then rebuild'),
      notes.join('\n'),
    );
    assert.deepEqual(await history(q), SHIPPED);
    const check = await q(
      `SELECT count(*) FILTER (WHERE i.indisvalid)::int AS valid, count(*)::int AS n FROM pg_partition_tree('telegram_sessions_user_id_unique') t JOIN pg_index i ON i.indexrelid = t.relid`,
    );
    assert.deepEqual(check.rows[0], { valid: 5, n: 5 }, 'the parent and its 4 partition indexes, all valid');

    const down = await migrate(url, ['down', '3']);
    assert.equal(down.code, 0, down.stderr);
    assert.equal((await q(`SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE '%user_id_unique%'`)).rows[0].n, 0);
    const up = await migrate(url, ['up']);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual((await q(`SELECT count(*) FILTER (WHERE i.indisvalid)::int AS valid, count(*)::int AS n FROM pg_partition_tree('telegram_sessions_user_id_unique') t JOIN pg_index i ON i.indexrelid = t.relid`)).rows[0], {
      valid: 5,
      n: 5,
    });
    await srv.remove();
  });

  it('Ctrl-C mid-build: the build is cancelled on the server, one line says what is left; the next up drops the leftover and finishes', async () => {
    await db.sql(partitionedPreFix('cc', 'hash', 4));
    await db.sql(SEED.replace('INSERT INTO telegram_sessions', 'INSERT INTO cc.telegram_sessions'));
    const rows = await rowsDigest(db, 'cc');
    const holder = await holdSnapshot(await db.client());
    const q = (sql: string, values: unknown[]): Promise<pg.QueryResult> => db.sql(sql, values);
    let child: { kill(sig: NodeJS.Signals): boolean } | undefined;
    const w = stderrWatcher();
    const run = settle(
      migrate(db.url, ['up', '--schema', 'cc'], {
        onSpawn: (c) => {
          child = c;
          w.onSpawn?.(c);
        },
      }),
    );
    await w.until((s) => s.includes('step 2 of 9: build telegram_sessions_p0_user_id_unique'), 60_000);
    await waitFor('the build waiting for old snapshots', async () => (await buildPhase(q, 'telegram_sessions_p0_user_id_unique'))?.startsWith('waiting'), { timeoutMs: 60_000 });
    child!.kill('SIGINT');
    const stopped = await outcome(run);
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.doesNotMatch(stopped.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(
      lastLine(stopped.stderr),
      'tsm: migrate up interrupted by SIGINT: 0004_user_id_unique_index cancelled on the server; ' +
        'applied before it: 0001_create_table, 0002_widen_session_columns, 0003_diagnostic_columns; ' +
        'INVALID index left behind: telegram_sessions_p0_user_id_unique (the next `tsm migrate up --schema cc` drops and rebuilds it)',
    );
    // Cancelled on the server: no build is left running, though the snapshot it waited for is still held.
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM pg_stat_progress_create_index WHERE datname = current_database()`)).rows[0].n, 0);
    await waitFor('every tsm connection closed', async () =>
      (await db.sql(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm'`)).rows[0].n === 0,
    );
    const left = (await treeIndexes(db, 'cc')).filter((i) => i.name.endsWith('user_id_unique'));
    assert.deepEqual(left.map((i) => [i.name, i.valid]), [[PARENT, false], ['telegram_sessions_p0_user_id_unique', false]], 'the parent ON ONLY and the cancelled build');

    await holder.query('COMMIT');
    const again = await migrate(db.url, ['up', '--schema', 'cc', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const notes = (again.json().steps as { name: string; notes: string[] }[]).find((s) => s.name === '0004_user_id_unique_index')!.notes;
    assert.ok(
      notes.includes('step 1 of 9: telegram_sessions_p0_user_id_unique on telegram_sessions_p0 is INVALID (left by a failed or interrupted build): drop it, then rebuild'),
      notes.join('\n'),
    );
    await assertCovered(db, 'cc');
    assert.deepEqual(await rowsDigest(db, 'cc'), rows);
  });
});

async function assertCovered(d: TestDatabase, schema: string): Promise<void> {
  assert.deepEqual(await coverage(d, schema), { valid: true, uncovered: [] });
  assert.equal((await treeIndexes(d, schema)).filter((i) => !i.valid).length, 0, 'no INVALID index left in the tree');
}
