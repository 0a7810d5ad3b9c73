/**
 * `tsm migrate up` on a partitioned telegram_sessions resumes from any half-built state (issue 11):
 * the parent index only; some partitions built but not attached; some attached (the hand
 * fix, under other names); a matching index under another name (attached, not rebuilt); an INVALID
 * leftover of a failed build (dropped and rebuilt); an INVALID index already attached (rebuilt with
 * REINDEX CONCURRENTLY); every partition attached yet the parent not marked valid; partitions added
 * later; a sub-partitioned partition half done; a build of tsm's own name still running elsewhere.
 * Each state is made by hand on a table with rows, after 0001–0003 (as a failed 0004 leaves it).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { SHIPPED, history, lastLine, migrate, stderrWatcher } from './helpers/migrate.js';
import { coverage, partitionedPreFix, rowsDigest, seedPartitioned, treeIndexes, type Layout } from './helpers/partitioned.js';
import { outcome, settle, sleep, waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);
const PARENT = 'telegram_sessions_user_id_unique';

/** A partitioned pre-fix table with rows, 0001–0003 applied. */
async function prepared(schema: string, layout: Layout = 'hash'): Promise<void> {
  await db.sql(partitionedPreFix(schema, layout, 4));
  await seedPartitioned(db, schema, 400, { pending: 3 });
  const r = await migrate(db.url, ['up', '3', '--schema', schema]);
  assert.equal(r.code, 0, r.stderr);
}

/** `up` (all pending) → its 0004 notes; asserts exit 0, full history, every partition covered. */
async function upConverges(schema: string, parent = PARENT): Promise<string[]> {
  const before = await rowsDigest(db, schema);
  const r = await migrate(db.url, ['up', '--schema', schema, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await history(db, schema), SHIPPED);
  assert.deepEqual(await coverage(db, schema, parent), { valid: true, uncovered: [] }, `${parent} valid and covering every partition`);
  assert.deepEqual(await rowsDigest(db, schema), before, 'rows unchanged');
  return (r.json().steps as { name: string; notes: string[] }[]).find((s) => s.name === '0004_user_id_unique_index')!.notes;
}

const oidOf = async (schema: string, name: string): Promise<number | undefined> => (await treeIndexes(db, schema)).find((i) => i.name === name)?.oid;
const steps = (notes: string[]): string[] => notes.filter((n) => n.startsWith('step ')).map((n) => n.replace(/^step \d+ of \d+: /, ''));

/** A failed CREATE UNIQUE INDEX CONCURRENTLY (a duplicate in that partition), the duplicate then removed: an INVALID index of that name. */
async function failedBuild(schema: string, partition: string, index: string): Promise<void> {
  const [row] = (await db.sql(`SELECT user_id FROM ${schema}.${partition} WHERE user_id IS NOT NULL ORDER BY user_id LIMIT 1`)).rows;
  await db.sql(`INSERT INTO ${schema}.${partition} (tenant_id, user_id, status) VALUES ('t-1', $1, 'dup')`, [row.user_id]);
  await assert.rejects(
    db.sql(`CREATE UNIQUE INDEX CONCURRENTLY ${index} ON ${schema}.${partition} (user_id) WHERE user_id IS NOT NULL`),
    (e: { code?: string }) => e.code === '23505',
  );
  await db.sql(`DELETE FROM ${schema}.${partition} WHERE status = 'dup'`);
}

describe('tsm migrate up resumes a half-built partitioned index', () => {
  it('the parent index only (ON ONLY): kept, every partition built and attached', async () => {
    await prepared('r1');
    await db.sql(`CREATE UNIQUE INDEX ${PARENT} ON ONLY r1.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    const oid = await oidOf('r1', PARENT);
    const notes = await upConverges('r1');
    assert.equal(await oidOf('r1', PARENT), oid, 'the same parent index');
    assert.deepEqual(steps(notes), [0, 1, 2, 3].flatMap((p) => [
      `build telegram_sessions_p${p}_user_id_unique on partition telegram_sessions_p${p} CONCURRENTLY (writers are not blocked)`,
      `attach telegram_sessions_p${p}_user_id_unique to ${PARENT}`,
    ]));
  });

  it('some partitions built but not attached: attached as they are (not rebuilt), the others built', async () => {
    await prepared('r2');
    await db.sql(`CREATE UNIQUE INDEX ${PARENT} ON ONLY r2.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_p0_user_id_unique ON r2.telegram_sessions_p0 (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_p2_user_id_unique ON r2.telegram_sessions_p2 (user_id) WHERE user_id IS NOT NULL`);
    const p0 = await oidOf('r2', 'telegram_sessions_p0_user_id_unique');
    const notes = await upConverges('r2');
    assert.equal(await oidOf('r2', 'telegram_sessions_p0_user_id_unique'), p0, 'attached, not rebuilt');
    assert.deepEqual(steps(notes), [
      `telegram_sessions_p0 already has telegram_sessions_p0_user_id_unique, a valid unique index on (user_id): attach it to ${PARENT} (no build)`,
      'build telegram_sessions_p1_user_id_unique on partition telegram_sessions_p1 CONCURRENTLY (writers are not blocked)',
      `attach telegram_sessions_p1_user_id_unique to ${PARENT}`,
      `telegram_sessions_p2 already has telegram_sessions_p2_user_id_unique, a valid unique index on (user_id): attach it to ${PARENT} (no build)`,
      'build telegram_sessions_p3_user_id_unique on partition telegram_sessions_p3 CONCURRENTLY (writers are not blocked)',
      `attach telegram_sessions_p3_user_id_unique to ${PARENT}`,
    ]);
  });

  it("the issue's hand fix (an index ON ONLY the parent under another name, 2 of 4 partitions attached): completed, not duplicated; down leaves it", async () => {
    await prepared('r3');
    await db.sql(`CREATE UNIQUE INDEX ts_uid ON ONLY r3.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    for (const p of [0, 1]) {
      await db.sql(`CREATE UNIQUE INDEX CONCURRENTLY p${p}_uid ON r3.telegram_sessions_p${p} (user_id) WHERE user_id IS NOT NULL`);
      await db.sql(`ALTER INDEX r3.ts_uid ATTACH PARTITION r3.p${p}_uid`);
    }
    const notes = await upConverges('r3', 'ts_uid');
    assert.match(notes[0]!, /\(4 partitions\): .*; 2 of 4 partitions have their index attached already$/);
    assert.equal(notes[1], 'ts_uid is an INVALID unique index on (user_id) ON ONLY telegram_sessions (made by hand?): completing it rather than building another');
    assert.equal(steps(notes).length, 4);
    assert.ok(!(await treeIndexes(db, 'r3')).some((i) => i.name === PARENT), 'no second parent index');

    const down = await migrate(db.url, ['down', '3', '--schema', 'r3', '--json']);
    assert.equal(down.code, 0, down.stderr);
    const downNotes = (down.json().steps as { name: string; notes: string[] }[]).find((s) => s.name === '0004_user_id_unique_index')!.notes;
    assert.deepEqual(downNotes, [`no index named ${PARENT}: nothing to drop (ts_uid, not created by this migration, is left in place)`]);
    assert.equal((await coverage(db, 'r3', 'ts_uid')).valid, true);
  });

  it('a matching index under another name on a partition is attached; one that does not match (no predicate) is left and a matching one built', async () => {
    await prepared('r4');
    await db.sql(`CREATE UNIQUE INDEX hand_p2 ON r4.telegram_sessions_p2 (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`CREATE UNIQUE INDEX full_p3 ON r4.telegram_sessions_p3 (user_id)`);
    const hand = await oidOf('r4', 'hand_p2');
    const notes = await upConverges('r4');
    assert.ok(steps(notes).includes(`telegram_sessions_p2 already has hand_p2, a valid unique index on (user_id): attach it to ${PARENT} (no build)`));
    const all = await treeIndexes(db, 'r4');
    assert.deepEqual(all.find((i) => i.name === 'hand_p2') && [all.find((i) => i.name === 'hand_p2')!.oid, all.find((i) => i.name === 'hand_p2')!.parent], [hand, PARENT]);
    assert.equal(all.find((i) => i.name === 'full_p3')?.parent, null, 'the predicate-less index cannot be attached: left alone');
    assert.equal(all.find((i) => i.name === 'telegram_sessions_p3_user_id_unique')?.parent, PARENT);
  });

  it('an INVALID leftover of a failed partition build: dropped and rebuilt (a new index); dry-run says so first', async () => {
    await prepared('r5');
    await db.sql(`CREATE UNIQUE INDEX ${PARENT} ON ONLY r5.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    await failedBuild('r5', 'telegram_sessions_p1', 'telegram_sessions_p1_user_id_unique');
    const left = await oidOf('r5', 'telegram_sessions_p1_user_id_unique');
    assert.ok(left);
    const dry = await migrate(db.url, ['up', '--dry-run', '--schema', 'r5']);
    assert.match(
      dry.stdout,
      new RegExp(
        [
          'ATTACH PARTITION "r5"\\."telegram_sessions_p0_user_id_unique";',
          '-- step 3 of 9: telegram_sessions_p1_user_id_unique on telegram_sessions_p1 is INVALID \\(left by a failed or interrupted build\\): drop it, then rebuild',
          'SELECT pg_catalog\\.pg_backend_pid\\(\\) AS pid; .*',
          "SET lock_timeout = '120000ms';",
          'DROP INDEX CONCURRENTLY IF EXISTS "r5"\\."telegram_sessions_p1_user_id_unique";',
          "SET lock_timeout = '500ms';",
          '-- step 4 of 9: build telegram_sessions_p1_user_id_unique on partition telegram_sessions_p1 CONCURRENTLY \\(writers are not blocked\\)',
          'SELECT pg_catalog\\.pg_backend_pid\\(\\) AS pid; .*',
          "SET lock_timeout = '120000ms';",
          'CREATE UNIQUE INDEX CONCURRENTLY "telegram_sessions_p1_user_id_unique" ON "r5"\\."telegram_sessions_p1" ',
        ].join('\n'),
      ),
    );
    await upConverges('r5');
    const now = await oidOf('r5', 'telegram_sessions_p1_user_id_unique');
    assert.ok(now !== undefined && now !== left, 'a new index, not the leftover');
  });

  it('an INVALID index already attached (it cannot be dropped): rebuilt with REINDEX INDEX CONCURRENTLY, attached again', async () => {
    await prepared('r6');
    await db.sql(`CREATE UNIQUE INDEX ${PARENT} ON ONLY r6.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    await failedBuild('r6', 'telegram_sessions_p2', 'bad_p2');
    await db.sql(`ALTER INDEX r6.${PARENT} ATTACH PARTITION r6.bad_p2`);
    assert.equal((await treeIndexes(db, 'r6')).find((i) => i.name === 'bad_p2')?.valid, false);
    const notes = await upConverges('r6');
    assert.deepEqual(steps(notes).filter((n) => n.includes('bad_p2')), [
      'bad_p2 on telegram_sessions_p2 is attached but INVALID (it cannot be dropped while attached): rebuild it with REINDEX INDEX CONCURRENTLY (writers are not blocked)',
      `attach bad_p2 again, now valid, so ${PARENT} counts it`,
    ]);
  });

  it('every partition attached and valid, yet the parent not marked valid (an attached index rebuilt by hand): one attach again validates it', async () => {
    await prepared('r7');
    await db.sql(`CREATE UNIQUE INDEX ${PARENT} ON ONLY r7.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    for (const p of [0, 1, 2]) {
      await db.sql(`CREATE UNIQUE INDEX i${p} ON r7.telegram_sessions_p${p} (user_id) WHERE user_id IS NOT NULL`);
      await db.sql(`ALTER INDEX r7.${PARENT} ATTACH PARTITION r7.i${p}`);
    }
    await failedBuild('r7', 'telegram_sessions_p3', 'i3');
    await db.sql(`ALTER INDEX r7.${PARENT} ATTACH PARTITION r7.i3`);
    await db.sql(`REINDEX INDEX r7.i3`);
    const all = await treeIndexes(db, 'r7');
    assert.deepEqual(all.map((i) => i.valid), [false, true, true, true, true], 'partitions valid, parent not');
    const notes = await upConverges('r7');
    assert.deepEqual(steps(notes), [
      `every partition of telegram_sessions has its index attached and valid, but ${PARENT} is not marked valid: attach i0 again, so PostgreSQL re-counts them`,
    ]);
  });

  it('partitions added while the parent index is ON ONLY (created, or attached with rows): PostgreSQL indexes them on the way in; up completes the rest', async () => {
    await prepared('r8', 'list');
    await db.sql(`CREATE UNIQUE INDEX ${PARENT} ON ONLY r8.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`CREATE TABLE r8.telegram_sessions_c PARTITION OF r8.telegram_sessions FOR VALUES IN ('c-1', 'c-2')`);
    await db.sql(`CREATE TABLE r8.late (LIKE r8.telegram_sessions INCLUDING DEFAULTS)`);
    await db.sql(`INSERT INTO r8.late (tenant_id, user_id, status) VALUES ('t-1', 'late-1', 'active'), ('t-1', 'late-2', 'active')`);
    await db.sql(`ALTER TABLE r8.telegram_sessions ATTACH PARTITION r8.late FOR VALUES IN ('late-1', 'late-2')`);
    const notes = await upConverges('r8');
    assert.match(notes[0]!, /\(6 partitions\): .*; 2 of 6 partitions have their index attached already$/);
    assert.equal(steps(notes).filter((n) => n.startsWith('build ')).length, 4);

    // After up, a partition added later is indexed by PostgreSQL as it is attached: still covered.
    await db.sql(`CREATE TABLE r8.telegram_sessions_d PARTITION OF r8.telegram_sessions FOR VALUES IN ('d-1')`);
    assert.deepEqual(await coverage(db, 'r8'), { valid: true, uncovered: [] });
    const again = await migrate(db.url, ['up', '--schema', 'r8']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /up to date/);
  });

  it('two levels, half done (the sub-partition index ON ONLY, one of its partitions attached): completed bottom-up', async () => {
    await prepared('r9', 'hash-sub-list');
    await db.sql(`CREATE UNIQUE INDEX ${PARENT} ON ONLY r9.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`CREATE UNIQUE INDEX sub_uid ON ONLY r9.telegram_sessions_p1 (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`CREATE UNIQUE INDEX CONCURRENTLY sub_a_uid ON r9.telegram_sessions_p1_a (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`ALTER INDEX r9.sub_uid ATTACH PARTITION r9.sub_a_uid`);
    const notes = await upConverges('r9');
    assert.deepEqual(steps(notes), [
      'build telegram_sessions_p0_user_id_unique on partition telegram_sessions_p0 CONCURRENTLY (writers are not blocked)',
      `attach telegram_sessions_p0_user_id_unique to ${PARENT}`,
      'build telegram_sessions_p1_rest_user_id_unique on partition telegram_sessions_p1_rest CONCURRENTLY (writers are not blocked)',
      'attach telegram_sessions_p1_rest_user_id_unique to sub_uid',
      `attach sub_uid (now covering every partition of telegram_sessions_p1) to ${PARENT}`,
    ]);
  });

  it("another session's build of a partition index under tsm's name: up refuses naming its pid, then attaches it once it is done", async () => {
    await prepared('r10');
    const holder = await db.client();
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await holder.query('SELECT count(*) FROM r10.telegram_sessions_p3');
    const builder = await db.client();
    const pid = (await builder.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const build = settle(builder.query(`CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_p3_user_id_unique ON r10.telegram_sessions_p3 (user_id) WHERE user_id IS NOT NULL`));
    await waitFor('the other build waiting in pg_stat_progress_create_index', async () =>
      (await db.sql(`SELECT count(*)::int AS n FROM pg_stat_progress_create_index WHERE pid = $1 AND index_relid <> 0`, [pid])).rows[0].n === 1,
    );
    const r = await migrate(db.url, ['up', '--schema', 'r10']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      lastLine(r.stderr),
      `tsm: 0004_user_id_unique_index: an index build of telegram_sessions_p3_user_id_unique on telegram_sessions_p3 is in progress (pid ${pid}); ` +
        'wait for it to finish, then run `tsm migrate up --schema r10` again; nothing was applied',
    );
    assert.deepEqual(await history(db, 'r10'), SHIPPED.slice(0, 3));
    await holder.query('COMMIT');
    await outcome(build);
    const p3 = await oidOf('r10', 'telegram_sessions_p3_user_id_unique');
    const notes = await upConverges('r10');
    assert.ok(steps(notes).includes(`telegram_sessions_p3 already has telegram_sessions_p3_user_id_unique, a valid unique index on (user_id): attach it to ${PARENT} (no build)`));
    assert.equal(await oidOf('r10', 'telegram_sessions_p3_user_id_unique'), p3);
  });

  it('a partition build blocked by a lock on its partition waits under --index-lock-timeout, once (not --lock-timeout, no retry, no rebuild); up finishes when it is let go', async () => {
    await prepared('r11');
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE r11.telegram_sessions_p2 IN SHARE UPDATE EXCLUSIVE MODE');
    const run = settle(migrate(db.url, ['up', '--schema', 'r11', '--lock-timeout', '300ms', '--json'], { timeoutMs: 90_000 }));
    await waitFor(
      "tsm's build on telegram_sessions_p2 waiting for its lock",
      async () =>
        (
          await db.sql(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tsm'
                AND wait_event_type = 'Lock' AND query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY "telegram_sessions_p2_user_id_unique"%'`,
          )
        ).rows[0].n === 1,
      { timeoutMs: 60_000 },
    );
    await sleep(1500); // five times --lock-timeout: still the same build, waiting
    await holder.query('COMMIT');
    const r = await outcome(run);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /retrying/);
    const step = (r.json().steps as { name: string; attempts: number; notes: string[] }[]).find((x) => x.name === '0004_user_id_unique_index')!;
    assert.equal(step.attempts, 1, 'one build, not retried');
    assert.equal(steps(step.notes).length, 9);
    assert.deepEqual(await coverage(db, 'r11'), { valid: true, uncovered: [] });
    assert.deepEqual(await history(db, 'r11'), SHIPPED);
  });

  it('a partition build that times out (--index-lock-timeout): exit 1 naming the step, the option and the holder, not retried; the next up resumes after the partitions already attached', async () => {
    await prepared('r13');
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE r13.telegram_sessions_p2 IN SHARE UPDATE EXCLUSIVE MODE');
    const holderPid = (await holder.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const started = Date.now();
    const r = await migrate(db.url, ['up', '--schema', 'r13', '--index-lock-timeout', '1s'], { timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.ok(Date.now() - started < 30_000, 'one wait of about 1 s, not retries of it');
    assert.doesNotMatch(r.stderr, /retrying/);
    const line = lastLine(r.stderr);
    assert.match(
      line,
      new RegExp(
        '^tsm: 0004_user_id_unique_index failed: step 6 of 9 \\(build telegram_sessions_p2_user_id_unique on telegram_sessions_p2\\): ' +
          'lock_timeout \\(--index-lock-timeout 1s\\): canceling statement due to lock timeout \\(SQLSTATE 55P03\\); ' +
          'the next `tsm migrate up --schema r13` continues from there; ' +
          `holding locks on the table: pid ${holderPid} \\(idle in transaction, transaction open \\d+ s, holds ShareUpdateExclusiveLock on telegram_sessions_p2\\); ` +
          'nothing was applied$',
      ),
    );
    assert.deepEqual(await history(db, 'r13'), SHIPPED.slice(0, 3), 'nothing half-applied is recorded');
    const attached = (await treeIndexes(db, 'r13')).filter((i) => i.parent === PARENT).map((i) => i.name);
    assert.deepEqual(attached, ['telegram_sessions_p0_user_id_unique', 'telegram_sessions_p1_user_id_unique']);

    await holder.query('COMMIT');
    const notes = await upConverges('r13');
    assert.match(notes[0]!, /; 2 of 4 partitions have their index attached already$/, 'resumed after p0 and p1');
    assert.deepEqual(steps(notes), [2, 3].flatMap((p) => [
      `build telegram_sessions_p${p}_user_id_unique on partition telegram_sessions_p${p} CONCURRENTLY (writers are not blocked)`,
      `attach telegram_sessions_p${p}_user_id_unique to ${PARENT}`,
    ]));
  });

  it('an ATTACH that gets no lock in time (--lock-timeout) is retried within the run, which resumes after the partitions already attached', async () => {
    await prepared('r14');
    await db.sql(`CREATE UNIQUE INDEX hand_p2 ON r14.telegram_sessions_p2 (user_id) WHERE user_id IS NOT NULL`);
    // Reading the partition locks its indexes (ACCESS SHARE) until the transaction ends: ATTACH
    // PARTITION needs ACCESS EXCLUSIVE on hand_p2. No snapshot is kept between statements (READ
    // COMMITTED), so the builds of the other partitions do not wait for this transaction.
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM r14.telegram_sessions_p2');
    const w = stderrWatcher();
    const run = settle(migrate(db.url, ['up', '--schema', 'r14', '--lock-timeout', '300ms', '--json'], { onSpawn: w.onSpawn, timeoutMs: 90_000 }));
    await w.until((t) => /0004_user_id_unique_index: no lock within 300ms; retrying/.test(t), 60_000);
    await holder.query('COMMIT');
    const r = await outcome(run);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /step 6 of 8: telegram_sessions_p2 already has hand_p2, a valid unique index on \(user_id\): attach it/, 'the first attempt got as far as the attach');
    const step = (r.json().steps as { name: string; attempts: number; notes: string[] }[]).find((x) => x.name === '0004_user_id_unique_index')!;
    assert.ok(step.attempts >= 2, `retried: ${step.attempts} attempts`);
    assert.match(step.notes[0]!, /; 2 of 4 partitions have their index attached already$/, 'the last attempt resumed after p0 and p1');
    assert.deepEqual(steps(step.notes), [
      `telegram_sessions_p2 already has hand_p2, a valid unique index on (user_id): attach it to ${PARENT} (no build)`,
      'build telegram_sessions_p3_user_id_unique on partition telegram_sessions_p3 CONCURRENTLY (writers are not blocked)',
      `attach telegram_sessions_p3_user_id_unique to ${PARENT}`,
    ]);
    assert.deepEqual(await coverage(db, 'r14'), { valid: true, uncovered: [] });
    assert.deepEqual(await history(db, 'r14'), SHIPPED);
  });

  it('a writer that never commits on one partition: exit 1 after --index-lock-timeout naming the step and the INVALID partition index left behind; after it commits, up finishes', async () => {
    await prepared('r12');
    const writer = await db.client();
    await writer.query('BEGIN');
    await writer.query(`UPDATE r12.telegram_sessions_p1 SET status = status WHERE user_id IS NOT NULL`);
    const started = Date.now();
    const r = await migrate(db.url, ['up', '--schema', 'r12', '--lock-timeout', '200ms', '--index-lock-timeout', '1s'], { timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.ok(Date.now() - started < 30_000, 'not retried');
    assert.doesNotMatch(r.stderr, /retrying/);
    const line = lastLine(r.stderr);
    assert.match(
      line,
      /^tsm: 0004_user_id_unique_index failed: step 4 of 9 \(build telegram_sessions_p1_user_id_unique on telegram_sessions_p1\): lock_timeout \(--index-lock-timeout 1s\): canceling statement due to lock timeout \(SQLSTATE 55P03\); /,
    );
    assert.match(line, /holds (AccessShareLock on telegram_sessions, )?RowExclusiveLock on telegram_sessions_p1\)/, 'the writer is named, with the partition it locks');
    assert.match(line, /INVALID index left behind: telegram_sessions_p1_user_id_unique \(the next `tsm migrate up --schema r12` drops and rebuilds it\)/);
    assert.doesNotMatch(line, new RegExp(`INVALID index left behind: [^;]*${PARENT}`), 'the parent index is not a leftover: the next up completes it');
    assert.deepEqual(await history(db, 'r12'), SHIPPED.slice(0, 3));
    await writer.query('COMMIT');
    const notes = await upConverges('r12');
    assert.ok(steps(notes).includes('telegram_sessions_p1_user_id_unique on telegram_sessions_p1 is INVALID (left by a failed or interrupted build): drop it, then rebuild'), notes.join('\n'));
  });
});
