/**
 * tsm migrate on a partitioned telegram_sessions (issue 11): HASH and LIST on user_id converge from
 * the pre-fix table (ON ONLY parent index, CONCURRENTLY per partition, ATTACH PARTITION), shown step
 * by step by --dry-run (nothing changed); two levels of partitioning work; duplicates stop `up`
 * before anything changes, naming the partitions and `tsm dedupe`; `down` reverts and `up` builds
 * again; the upsert (the statement and the function) works on the partitioned parent.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { SHIPPED, catalogSnapshot, history, lastLine, migrate } from './helpers/migrate.js';
import { coverage, partitionedPreFix, rowsDigest, seedPartitioned, treeIndexes } from './helpers/partitioned.js';
import { outcome, settle } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

interface Step {
  name: string;
  notes: string[];
}
const notesOf = (doc: { steps: Step[] }, name = '0004_user_id_unique_index'): string[] => doc.steps.find((s) => s.name === name)?.notes ?? [];

describe('tsm migrate on a telegram_sessions partitioned by user_id', () => {
  it('HASH (user_id), pre-fix with rows: --dry-run shows each step and changes nothing; up builds and attaches per partition', async () => {
    await db.sql(partitionedPreFix('h', 'hash', 4));
    await seedPartitioned(db, 'h', 2000, { pending: 20 });
    const rows = await rowsDigest(db, 'h');
    const before = await catalogSnapshot(db);

    const dry = await migrate(db.url, ['up', '--dry-run', '--schema', 'h']);
    assert.equal(dry.code, 0, dry.stderr);
    const block = dry.stdout.split('\n\n').find((b) => b.startsWith('-- 0004_user_id_unique_index'));
    const step = (n: number, p: number): string[] => [
      `-- step ${n} of 9: build telegram_sessions_p${p}_user_id_unique on partition telegram_sessions_p${p} CONCURRENTLY (writers are not blocked)`,
      `CREATE UNIQUE INDEX CONCURRENTLY "telegram_sessions_p${p}_user_id_unique" ON "h"."telegram_sessions_p${p}" (user_id) WHERE user_id IS NOT NULL;`,
      `-- step ${n + 1} of 9: attach telegram_sessions_p${p}_user_id_unique to telegram_sessions_user_id_unique`,
      `ALTER INDEX "h"."telegram_sessions_user_id_unique" ATTACH PARTITION "h"."telegram_sessions_p${p}_user_id_unique";`,
    ];
    const lines = block?.split('\n') ?? [];
    // The timeouts tsm sets around each statement, and the history row's transaction, are checked
    // apart: first the steps, each note just before its statement.
    const plumbing = /^(SET |RESET |BEGIN;|COMMIT;|SELECT pg_catalog\.pg_backend_pid\(\)|INSERT INTO "h"\."tsm_migrations")/;
    assert.deepEqual(lines.filter((l) => !plumbing.test(l)), [
      '-- 0004_user_id_unique_index (no transaction: each statement alone)',
      '-- h.telegram_sessions is partitioned (4 partitions): the unique index is built per partition, as PostgreSQL allows without blocking writers (ON ONLY the parent, CONCURRENTLY per partition, ATTACH PARTITION)',
      "-- step 1 of 9: create telegram_sessions_user_id_unique ON ONLY telegram_sessions (catalog only, no rows read; INVALID until every partition's index is attached)",
      'CREATE UNIQUE INDEX "telegram_sessions_user_id_unique" ON ONLY "h"."telegram_sessions" (user_id) WHERE user_id IS NOT NULL;',
      ...step(2, 0),
      ...step(4, 1),
      ...step(6, 2),
      ...step(8, 3),
      '-- telegram_sessions_user_id_unique becomes valid with the last attach',
    ]);
    // Every concurrent build runs under --index-lock-timeout, every other statement under
    // --lock-timeout (the lock_timeout in force is followed through the SETs as they are sent), each
    // after the backend check; each step's note comes before that check, not between it and its statement.
    let lockTimeout: string | null = null;
    let checked = false;
    lines.forEach((l, i) => {
      const set = /^SET lock_timeout = '(\d+ms)';$/.exec(l);
      if (set) lockTimeout = set[1]!;
      if (l.startsWith('SELECT pg_catalog.pg_backend_pid() AS pid;')) checked = true;
      if (/^(CREATE UNIQUE INDEX|ALTER INDEX)/.test(l)) {
        assert.equal(lockTimeout, l.includes(' CONCURRENTLY ') ? '120000ms' : '500ms', l);
        assert.ok(checked, `the backend is checked before: ${l}`);
        checked = false;
      }
      if (l.startsWith('-- step ')) assert.match(lines[i + 1]!, /^SELECT pg_catalog\.pg_backend_pid\(\) AS pid;/, `after ${l}`);
    });
    assert.equal(lines.filter((l) => l === "SET lock_timeout = '120000ms';").length, 4, 'one --index-lock-timeout per build');
    assert.ok(lines.some((l) => /^INSERT INTO "h"\."tsm_migrations"/.test(l)), 'the history row');
    assert.deepEqual(lines.slice(-3), ['RESET lock_timeout;', 'RESET statement_timeout;', 'RESET idle_in_transaction_session_timeout;'], 'nothing tsm set is left on the session');
    assert.deepEqual(await catalogSnapshot(db), before, '--dry-run changed nothing');

    const r = await migrate(db.url, ['up', '--schema', 'h', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.json().steps.map((s: Step) => s.name), SHIPPED);
    const notes = notesOf(r.json());
    assert.equal(notes.length, 11);
    assert.equal(notes.at(-1), 'telegram_sessions_user_id_unique is valid: every partition\'s index is attached');
    assert.match(r.stderr, /tsm migrate: {3}step 9 of 9: attach telegram_sessions_p3_user_id_unique/, 'each step is shown on stderr as it runs');
    assert.ok(!r.stderr.includes('\r') && !r.stderr.includes('\u001b['), 'no progress line when stderr is not a terminal');
    assert.deepEqual(await coverage(db, 'h'), { valid: true, uncovered: [] });
    assert.deepEqual(await history(db, 'h'), SHIPPED);
    assert.deepEqual(await rowsDigest(db, 'h'), rows, 'rows unchanged');

    const again = await migrate(db.url, ['up', '--schema', 'h']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /ok: up to date, no migration pending/);
  });

  it('the upsert on the partitioned parent: INSERT … ON CONFLICT (user_id) and upsert_telegram_session (text, bigint, tenant mismatch, NULL user, a race)', async () => {
    const t = 'h.telegram_sessions';
    const [old] = (await db.sql(`SELECT id, tableoid::regclass::text AS part FROM ${t} WHERE user_id = 'u-5'`)).rows;
    const stmt = await db.sql(
      `INSERT INTO ${t} AS s (tenant_id, user_id, session_string_enc, key_id, status) VALUES ('t-1', 'u-5', 'refreshed', 'k2', 'active')
       ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE SET session_string_enc = EXCLUDED.session_string_enc, key_id = EXCLUDED.key_id
       RETURNING id, tableoid::regclass::text AS part`,
    );
    assert.deepEqual(stmt.rows, [{ id: old.id, part: old.part }], 'the same row, updated in its partition');

    const call = (tenant: string, user: string | number | null, session: string): Promise<string> =>
      db.sql(`SELECT h.upsert_telegram_session($1, $2, $3, 'k1') AS id`, [tenant, user, session]).then((x) => x.rows[0].id as string);
    const first = await call('t-1', 'u-new-1', 'a');
    assert.equal(await call('t-1', 'u-new-1', 'b'), first, 'update path: same id');
    const [row] = (await db.sql(`SELECT count(*)::int AS n, max(session_string_enc) AS s FROM ${t} WHERE user_id = 'u-new-1'`)).rows;
    assert.deepEqual(row, { n: 1, s: 'b' });
    const big = await db.sql(`SELECT h.upsert_telegram_session('t-1', 987654321::bigint, 'x', 'k1') AS id`);
    assert.equal((await db.sql(`SELECT id FROM ${t} WHERE user_id = '987654321'`)).rows[0].id, big.rows[0].id);
    await assert.rejects(call('t-2', 'u-new-1', 'stolen'), (e: { code?: string }) => e.code === 'TSM01', 'another tenant: tenant_mismatch');
    await assert.rejects(call('t-1', null, 'x'), (e: { code?: string }) => e.code === '23502');
    assert.equal((await db.sql(`SELECT session_string_enc FROM ${t} WHERE user_id = 'u-new-1'`)).rows[0].session_string_enc, 'b');

    const clients = await Promise.all(Array.from({ length: 8 }, () => db.client()));
    const racing = clients.map((c, i) => settle(c.query(`SELECT h.upsert_telegram_session('t-1', 'u-race', $1, 'k1') AS id`, [`s${i}`])));
    const ids = new Set<string>();
    for (const s of racing) ids.add((await outcome(s)).rows[0].id);
    assert.equal(ids.size, 1, 'every racer got the same id');
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM ${t} WHERE user_id = 'u-race'`)).rows[0].n, 1);
  });

  it('LIST (user_id) with a NULL partition and a DEFAULT partition: every partition gets its index', async () => {
    await db.sql(partitionedPreFix('l', 'list'));
    await seedPartitioned(db, 'l', 300, { pending: 5 });
    const r = await migrate(db.url, ['up', '--schema', 'l', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await coverage(db, 'l'), { valid: true, uncovered: [] });
    assert.deepEqual(
      (await treeIndexes(db, 'l')).map((i) => [i.table, i.name, i.valid, i.parent]),
      [
        ['telegram_sessions', 'telegram_sessions_user_id_unique', true, null],
        ['telegram_sessions_a', 'telegram_sessions_a_user_id_unique', true, 'telegram_sessions_user_id_unique'],
        ['telegram_sessions_b', 'telegram_sessions_b_user_id_unique', true, 'telegram_sessions_user_id_unique'],
        ['telegram_sessions_pending', 'telegram_sessions_pending_user_id_unique', true, 'telegram_sessions_user_id_unique'],
        ['telegram_sessions_rest', 'telegram_sessions_rest_user_id_unique', true, 'telegram_sessions_user_id_unique'],
      ],
    );
    const id = await db.sql(`SELECT l.upsert_telegram_session('t-1', 'u-3', 'new', 'k1') AS id`);
    assert.equal((await db.sql(`SELECT id FROM l.telegram_sessions WHERE user_id = 'u-3'`)).rows[0].id, id.rows[0].id);
  });

  it('two levels (a HASH partition itself partitioned by LIST (user_id)): the sub-partition gets its own index, attached once complete', async () => {
    await db.sql(partitionedPreFix('ml', 'hash-sub-list'));
    await seedPartitioned(db, 'ml', 400);
    const dry = await migrate(db.url, ['up', '--dry-run', '--schema', 'ml', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const planned = dry.json().migrations.find((m: { name: string }) => m.name === '0004_user_id_unique_index');
    const steps = (planned.notes as string[]).filter((n) => n.startsWith('step '));
    assert.deepEqual(steps, [
      "step 1 of 9: create telegram_sessions_user_id_unique ON ONLY telegram_sessions (catalog only, no rows read; INVALID until every partition's index is attached)",
      'step 2 of 9: build telegram_sessions_p0_user_id_unique on partition telegram_sessions_p0 CONCURRENTLY (writers are not blocked)',
      'step 3 of 9: attach telegram_sessions_p0_user_id_unique to telegram_sessions_user_id_unique',
      'step 4 of 9: create telegram_sessions_p1_user_id_unique ON ONLY telegram_sessions_p1, itself partitioned by LIST (user_id) (catalog only)',
      'step 5 of 9: build telegram_sessions_p1_a_user_id_unique on partition telegram_sessions_p1_a CONCURRENTLY (writers are not blocked)',
      'step 6 of 9: attach telegram_sessions_p1_a_user_id_unique to telegram_sessions_p1_user_id_unique',
      'step 7 of 9: build telegram_sessions_p1_rest_user_id_unique on partition telegram_sessions_p1_rest CONCURRENTLY (writers are not blocked)',
      'step 8 of 9: attach telegram_sessions_p1_rest_user_id_unique to telegram_sessions_p1_user_id_unique',
      'step 9 of 9: attach telegram_sessions_p1_user_id_unique (now covering every partition of telegram_sessions_p1) to telegram_sessions_user_id_unique',
    ]);
    assert.equal(planned.note_before.length, planned.notes.length, 'each note has its place among the statements');

    const r = await migrate(db.url, ['up', '--schema', 'ml']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await coverage(db, 'ml'), { valid: true, uncovered: [] });
    const sub = (await treeIndexes(db, 'ml')).find((i) => i.name === 'telegram_sessions_p1_user_id_unique');
    assert.deepEqual([sub?.partitioned, sub?.valid, sub?.parent], [true, true, 'telegram_sessions_user_id_unique']);
  });

  it('down reverts 0004 (DROP INDEX under lock_timeout: every attached index goes with it), up builds it again', async () => {
    const down = await migrate(db.url, ['down', '3', '--schema', 'ml', '--json']);
    assert.equal(down.code, 0, down.stderr);
    assert.match(notesOf(down.json()).join('\n'), /telegram_sessions is partitioned: DROP INDEX CONCURRENTLY is refused on a partitioned index .* the 4 indexes attached to it/);
    assert.deepEqual(await treeIndexes(db, 'ml'), [], 'no index left anywhere in the tree');
    assert.deepEqual(await history(db, 'ml'), SHIPPED.slice(0, 3));
    const up = await migrate(db.url, ['up', '--schema', 'ml']);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(await coverage(db, 'ml'), { valid: true, uncovered: [] });
    assert.deepEqual(await history(db, 'ml'), SHIPPED);
  });

  it('down on a partitioned table under the lock-queue rules: DROP INDEX waits at most --lock-timeout per attempt, is retried, then fails naming the holder with the index intact; once the holder is gone it goes through', async () => {
    await db.sql(partitionedPreFix('dl', 'list', 3));
    await seedPartitioned(db, 'dl', 300);
    assert.equal((await migrate(db.url, ['up', '--schema', 'dl'])).code, 0);
    const holder = await db.client();
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM dl.telegram_sessions');
    const holderPid = (await holder.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const started = Date.now();
    const r = await migrate(db.url, ['down', '3', '--schema', 'dl', '--lock-timeout', '300ms', '--lock-retries', '1']);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(Date.now() - started < 30_000);
    assert.match(r.stderr, /0004_user_id_unique_index: no lock within 300ms; retrying in \S+ \(attempt 2 of 2\)/);
    assert.match(
      lastLine(r.stderr),
      new RegExp(
        '^tsm: 0004_user_id_unique_index \\(down\\) failed: lock_timeout \\(--lock-timeout 300ms\\) in all 2 attempts over [\\d.]+m?s: .*\\(SQLSTATE 55P03\\); ' +
          `holding locks on the table: pid ${holderPid} \\(idle in transaction, [^)]*holds AccessShareLock[^)]*\\); ` +
          'reverted before it: 0006_harden_upsert_function, 0005_upsert_function$',
      ),
    );
    assert.deepEqual(await history(db, 'dl'), SHIPPED.slice(0, 4), '0004 still applied');
    assert.deepEqual(await coverage(db, 'dl'), { valid: true, uncovered: [] }, 'the index intact');
    await holder.query('COMMIT');
    const down = await migrate(db.url, ['down', '--schema', 'dl']);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await history(db, 'dl'), SHIPPED.slice(0, 3));
    assert.deepEqual((await treeIndexes(db, 'dl')).filter((i) => i.name.endsWith('user_id_unique')), []);
  });

  it('duplicates: up stops before anything changes, counting them across the partitions, naming the partitions and tsm dedupe', async () => {
    await db.sql(partitionedPreFix('d', 'hash', 4));
    await seedPartitioned(db, 'd', 500, { dupUsers: 3 });
    const parts = (await db.sql(`SELECT DISTINCT tableoid::regclass::text AS p FROM d.telegram_sessions WHERE user_id IN ('u-1', 'u-2', 'u-3') ORDER BY 1`)).rows.map(
      (x) => x.p.replace(/^d\./, ''),
    );
    const rows = await rowsDigest(db, 'd');
    const before = await catalogSnapshot(db);
    const r = await migrate(db.url, ['up', '--schema', 'd']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(
      lastLine(r.stderr),
      `tsm: 0004_user_id_unique_index: 3 user_ids have more than one row (6 rows in all, in partition${parts.length === 1 ? '' : 's'} ${parts.join(', ')}; ` +
        'worst: "u-1" ×2, "u-2" ×2, "u-3" ×2): the unique index cannot be built; run `tsm dedupe --schema d` (it archives the extra rows, nothing is deleted), ' +
        'then `tsm migrate up --schema d` again; nothing was applied',
    );
    assert.deepEqual(await catalogSnapshot(db), before, 'nothing changed: no history table, no column, no index');
    assert.deepEqual(await rowsDigest(db, 'd'), rows);
    const j = await migrate(db.url, ['up', '--schema', 'd', '--json']);
    const doc = j.json<{ error: { code: string }; duplicates?: unknown }>();
    assert.deepEqual([j.code, doc.error.code, doc.duplicates], [1, 'duplicates', { user_ids: 3, rows: 6, partitions: parts }]);
  });
});

describe('partition index names', () => {
  it('deterministic, at most 63 bytes, distinct for long names with the same beginning; hostile schema and partition names end to end', async () => {
    const { partitionIndexName } = await import('../migrations/0004_user_id_unique_index.js');
    assert.equal(partitionIndexName('telegram_sessions_p7'), 'telegram_sessions_p7_user_id_unique');
    assert.equal(partitionIndexName('telegram_sessions_p7', 2), 'telegram_sessions_p7_user_id_unique_2');
    const a = 'sessions_ü🚀_' + 'x'.repeat(40) + '_a';
    const b = 'sessions_ü🚀_' + 'x'.repeat(40) + '_b';
    for (const n of [a, b]) {
      const name = partitionIndexName(n);
      assert.ok(Buffer.byteLength(name) <= 63, `${name}: ${Buffer.byteLength(name)} bytes`);
      assert.equal(partitionIndexName(n), name, 'deterministic');
      assert.match(name, /_[0-9a-f]{8}_user_id_unique$/);
      assert.ok(Buffer.byteLength(partitionIndexName(n, 3)) <= 63);
    }
    assert.notEqual(partitionIndexName(a), partitionIndexName(b));

    const schema = `it's "ü" -- */ ;`;
    const s = '"' + schema.replace(/"/g, '""') + '"';
    const long = `p"1'; DROP TABLE x; -- ` + 'ü'.repeat(18);
    await db.sql(`CREATE SCHEMA ${s};
      CREATE TABLE ${s}.telegram_sessions (tenant_id varchar(255) NOT NULL, user_id varchar(255), session_string_enc text, key_id varchar(64),
        status varchar(20) NOT NULL DEFAULT 'pending', updated_at timestamptz NOT NULL DEFAULT now()) PARTITION BY HASH (user_id);
      CREATE TABLE ${s}."${long.replace(/"/g, '""')}" PARTITION OF ${s}.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 0);
      CREATE TABLE ${s}.p2 PARTITION OF ${s}.telegram_sessions FOR VALUES WITH (MODULUS 2, REMAINDER 1);
      INSERT INTO ${s}.telegram_sessions (tenant_id, user_id) SELECT 't', 'u' || g FROM generate_series(1, 100) g;`);
    const r = await migrate(db.url, ['up', '--schema', schema]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await coverage(db, schema), { valid: true, uncovered: [] });
    const names = (await treeIndexes(db, schema)).map((i) => i.name);
    assert.ok(names.includes(partitionIndexName(long)), names.join(', '));
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM pg_class WHERE relname = 'x' OR relname LIKE 'pwned%'`)).rows[0].n, 0);
  });
});
