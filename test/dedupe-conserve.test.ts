/**
 * tsm dedupe on the incident's pre-fix table (issue 5): counts conserved on 10,000 rows with 500
 * duplicated user_ids, every row whole in exactly one place, the right row kept, idempotence,
 * --dry-run changes nothing, --keep oldest, --schema, and the unique index can be built afterwards.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DedupeReport } from '../src/dedupe/engine.js';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema, q } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

const COLS = 'id, tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at';

/**
 * 10,000 rows: user_ids dup-1 … dup-500 with 2, 3 or 4 rows each (1,501 rows; created_at
 * falls as updated_at rises, some share updated_at, some share both, to exercise the tie-breaks), 99 rows without
 * user_id, and 8,400 single users. A copy of every row goes to <schema>.orig for comparisons.
 */
function seed(schema: string): string {
  const s = q(schema);
  return `${preFixSchema(schema)}
INSERT INTO ${s}.telegram_sessions (${COLS})
SELECT gen_random_uuid(), 'tenant-' || (i % 3), 'dup-' || i, repeat(md5(i || '/' || j), 8), 'key-' || j, 'active',
       timestamptz '2024-06-01' - CASE WHEN i % 7 = 0 THEN 0 ELSE j END * interval '1 hour',
       timestamptz '2024-01-01' + CASE WHEN i % 5 = 0 OR i % 7 = 0 THEN 0 ELSE j END * interval '1 minute'
  FROM generate_series(1, 500) i, LATERAL generate_series(1, 2 + i % 3) j;
INSERT INTO ${s}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id)
SELECT 'tenant-x', CASE WHEN g <= 99 THEN NULL ELSE 'single-' || g END, md5(g::text), 'key-1'
  FROM generate_series(1, 8499) g;
CREATE TABLE ${s}.orig AS SELECT * FROM ${s}.telegram_sessions;`;
}

async function one<T = Record<string, unknown>>(sql: string): Promise<T> {
  return (await db.sql(sql)).rows[0] as T;
}

async function dedupe(args: string[]) {
  return runTsm(['dedupe', '-d', db.url, ...args]);
}

describe('tsm dedupe: conservation and idempotence', () => {
  it('10,000 rows, 500 duplicated user_ids: 1,001 rows archived whole, counts conserved, the newest kept', async () => {
    await db.sql(seed('public'));
    assert.equal((await one(`SELECT count(*)::int AS n FROM orig`)).n, 10_000);

    const r = await dedupe(['--json', '--batch-size', '120']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json<DedupeReport>();
    assert.deepEqual(j.before, { rows: 10_000, duplicate_users: 500, excess_rows: 1001, archive_rows: 0 });
    assert.deepEqual(j.after, { rows: 8999, duplicate_users: 0, excess_rows: 0, archive_rows: 1001 });
    assert.equal(j.archived, 1001);
    assert.equal(j.batches, 9, '1,001 rows in batches of 120');
    assert.equal(j.moved.length, 500);
    assert.deepEqual(j.conservation, { holds: true, rows_before: 10_000, rows_after: 8999, rows_archived: 1001, difference: 0, archive_grew_by: 1001 });
    assert.deepEqual(j.verification, { ok: true, moved: 1001, in_table: 0, in_archive: 1001, distinct_in_archive: 1001 });
    assert.equal(j.duplicates_remaining, 0);
    assert.equal(j.ok, true);

    // Every original row is in exactly one place, and unchanged there.
    const where = await one(`SELECT
        count(*) FILTER (WHERE t.id IS NOT NULL AND a.id IS NOT NULL)::int AS both,
        count(*) FILTER (WHERE t.id IS NULL AND a.id IS NULL)::int AS neither,
        count(*) FILTER (WHERE a.id IS NOT NULL AND (ROW(${prefixed('o')}) IS DISTINCT FROM ROW(${prefixed('a')})))::int AS changed_in_archive,
        count(*) FILTER (WHERE t.id IS NOT NULL AND (ROW(${prefixed('o')}) IS DISTINCT FROM ROW(${prefixed('t')})))::int AS changed_in_table
      FROM orig o
      LEFT JOIN telegram_sessions t ON t.id = o.id
      LEFT JOIN telegram_sessions_duplicates_archive a ON a.id = o.id`);
    assert.deepEqual(where, { both: 0, neither: 0, changed_in_archive: 0, changed_in_table: 0 });
    assert.equal((await one(`SELECT count(*)::int AS n FROM telegram_sessions_duplicates_archive`)).n, 1001);
    assert.equal((await one(`SELECT count(*)::int AS n FROM telegram_sessions WHERE user_id IS NULL`)).n, 99, 'NULL user_ids are not duplicates');

    // The kept row is the newest (updated_at, then created_at, then id), and the archive points at it.
    const expected = `SELECT DISTINCT ON (user_id) user_id, id FROM orig WHERE user_id LIKE 'dup-%'
                       ORDER BY user_id, updated_at DESC, created_at DESC, id DESC`;
    const kept = await one(`SELECT
        (SELECT count(*) FROM (${expected}) e JOIN telegram_sessions t ON t.id = e.id)::int AS kept_in_table,
        (SELECT count(*) FROM telegram_sessions_duplicates_archive a JOIN (${expected}) e USING (user_id) WHERE a.kept_id <> e.id)::int AS wrong_kept_id,
        (SELECT count(*) FROM telegram_sessions_duplicates_archive WHERE archived_at IS NULL)::int AS no_archived_at`);
    assert.deepEqual(kept, { kept_in_table: 500, wrong_kept_id: 0, no_archived_at: 0 });
    const byUser = new Map(j.moved.map((m) => [m.user_id, m]));
    assert.deepEqual(byUser.get('dup-2'), { user_id: 'dup-2', kept_id: (await one(`${expected.replace("LIKE 'dup-%'", "= 'dup-2'")}`)).id, archived: 3 });
  });

  it('runs twice: the second run moves nothing, changes nothing, exit 0', async () => {
    const before = await one(`SELECT (SELECT count(*) FROM telegram_sessions)::int AS t, (SELECT count(*) FROM telegram_sessions_duplicates_archive)::int AS a`);
    const r = await dedupe(['--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json();
    assert.equal(j.archived, 0);
    assert.equal(j.passes, 0);
    assert.deepEqual(j.archive_ddl, [], 'the archive is not touched again');
    assert.equal(j.conservation.holds, true);
    const after = await one(`SELECT (SELECT count(*) FROM telegram_sessions)::int AS t, (SELECT count(*) FROM telegram_sessions_duplicates_archive)::int AS a`);
    assert.deepEqual(after, before);
    const human = await dedupe([]);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /nothing to move: no duplicate user_ids/);
    assert.match(human.stdout, /ok +rows before = rows after \+ rows archived: 8,999 = 8,999 \+ 0/);
  });

  it('the unique index tsm migrate builds can be created afterwards', async () => {
    await db.sql(`CREATE UNIQUE INDEX dedupe_check_unique ON telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    await db.sql(`DROP INDEX dedupe_check_unique`);
  });

  it('tsm migrate up succeeds afterwards and builds the unique index', async () => {
    const r = await runTsm(['migrate', 'up', '-d', db.url, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const idx = await one(`SELECT count(*)::int AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
      WHERE c.oid = 'public.telegram_sessions'::regclass AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 AND a.attname = 'user_id'`);
    assert.equal(idx.n, 1);
    // The archive follows the table's new columns on the next run.
    const again = await dedupe(['--json']);
    assert.equal(again.code, 0, again.stderr);
    const cols = (await db.sql(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'
       AND table_name = 'telegram_sessions_duplicates_archive' AND column_name IN ('auth_error', 'error_details') ORDER BY 1`)).rows;
    assert.deepEqual(cols.map((c) => c.column_name), ['auth_error', 'error_details']);
  });
});

function prefixed(alias: string): string {
  return COLS.split(', ').map((c) => `${alias}.${c}`).join(', ');
}

describe('tsm dedupe: --dry-run, --keep, --schema', () => {
  it('--dry-run lists user_ids, counts and kept ids, exits 1 while duplicates exist, and changes nothing', async () => {
    await db.sql(`${preFixSchema('dry')}
      INSERT INTO dry.telegram_sessions (id, tenant_id, user_id, updated_at) VALUES
        ('00000000-0000-0000-0000-000000000001', 't', 'u1', '2024-01-01'),
        ('00000000-0000-0000-0000-000000000002', 't', 'u1', '2024-03-01'),
        ('00000000-0000-0000-0000-000000000003', 't', 'u1', '2024-02-01'),
        ('00000000-0000-0000-0000-000000000004', 't', 'u2', '2024-01-01'),
        ('00000000-0000-0000-0000-000000000005', 't', 'u2', '2024-01-02'),
        ('00000000-0000-0000-0000-000000000006', 't', 'u3', '2024-01-01');`);
    const r = await dedupe(['--schema', 'dry', '--dry-run', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const j = r.json();
    assert.equal(j.dry_run, true);
    assert.deepEqual(j.would_move, [
      { user_id: 'u1', rows: 3, kept_id: '00000000-0000-0000-0000-000000000002', archive_ids: ['00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001'] },
      { user_id: 'u2', rows: 2, kept_id: '00000000-0000-0000-0000-000000000005', archive_ids: ['00000000-0000-0000-0000-000000000004'] },
    ]);
    assert.deepEqual(j.before, { rows: 6, duplicate_users: 2, excess_rows: 3, archive_rows: 0 });
    assert.equal((await one(`SELECT to_regclass('dry.telegram_sessions_duplicates_archive') AS r`)).r, null, 'no archive table created');
    assert.equal((await one(`SELECT count(*)::int AS n FROM dry.telegram_sessions`)).n, 6);

    const human = await dedupe(['--schema', 'dry', '--dry-run']);
    assert.equal(human.code, 1);
    assert.match(human.stdout, /nothing was changed/);
    assert.match(human.stdout, /2 user_ids with duplicates: 3 rows would move/);
    assert.match(human.stdout, /u1 +│ 3 +│ 00000000-0000-0000-0000-000000000002/);
    assert.match(human.stdout, /tsm dedupe --schema dry/);
  });

  it('ties: equal updated_at → latest created_at, then highest id; --keep oldest is the reverse', async () => {
    const rows = `INSERT INTO %s.telegram_sessions (id, tenant_id, user_id, created_at, updated_at) VALUES
        ('00000000-0000-0000-0000-00000000000a', 't', 'created', '2024-01-02', '2024-05-01'),
        ('00000000-0000-0000-0000-00000000000b', 't', 'created', '2024-01-03', '2024-05-01'),
        ('00000000-0000-0000-0000-00000000000c', 't', 'created', '2024-01-01', '2024-05-01'),
        ('00000000-0000-0000-0000-00000000000d', 't', 'id', '2024-01-01', '2024-05-01'),
        ('00000000-0000-0000-0000-00000000000f', 't', 'id', '2024-01-01', '2024-05-01'),
        ('00000000-0000-0000-0000-00000000000e', 't', 'id', '2024-01-01', '2024-05-01');`;
    await db.sql(`${preFixSchema('newest')} ${rows.replace('%s', 'newest')} ${preFixSchema('oldest')} ${rows.replace('%s', 'oldest')}`);
    const kept = async (schema: string) =>
      Object.fromEntries((await db.sql(`SELECT user_id, id::text FROM ${schema}.telegram_sessions ORDER BY 1`)).rows.map((r) => [r.user_id, r.id]));

    const n = await dedupe(['--schema', 'newest', '--json']);
    assert.equal(n.code, 0, n.stderr);
    assert.deepEqual(await kept('newest'), { created: '00000000-0000-0000-0000-00000000000b', id: '00000000-0000-0000-0000-00000000000f' });
    const o = await dedupe(['--schema', 'oldest', '--keep', 'oldest', '--json']);
    assert.equal(o.code, 0, o.stderr);
    assert.equal(o.json().keep, 'oldest');
    assert.deepEqual(await kept('oldest'), { created: '00000000-0000-0000-0000-00000000000c', id: '00000000-0000-0000-0000-00000000000d' });
    const archived = await one(`SELECT count(*)::int AS n, count(*) FILTER (WHERE kept_id IN
        ('00000000-0000-0000-0000-00000000000c', '00000000-0000-0000-0000-00000000000d'))::int AS pointing FROM oldest.telegram_sessions_duplicates_archive`);
    assert.deepEqual(archived, { n: 4, pointing: 4 });
  });

  it('--schema with an unusual name: the archive is created in that schema; later columns are added to it', async () => {
    const schema = 'Tg Sessions';
    const s = q(schema);
    await db.sql(`${preFixSchema(schema)}
      INSERT INTO ${s}.telegram_sessions (tenant_id, user_id) VALUES ('t', 'a'), ('t', 'a');`);
    const r = await dedupe(['--schema', schema, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json().archived, 1);
    assert.equal((await one(`SELECT count(*)::int AS n FROM ${s}.telegram_sessions_duplicates_archive`)).n, 1);
    assert.equal((await one(`SELECT to_regclass('public.telegram_sessions_duplicates_archive') IS NOT NULL AS r`)).r, true, 'public has its own from the first test');
    assert.equal((await one(`SELECT count(*)::int AS n FROM public.telegram_sessions_duplicates_archive WHERE user_id = 'a'`)).n, 0);

    // The table gains the diagnostic columns and a wider type; new duplicates carry values in them.
    await db.sql(`ALTER TABLE ${s}.telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text, ALTER COLUMN key_id TYPE text;
      INSERT INTO ${s}.telegram_sessions (tenant_id, user_id, auth_error, error_details, key_id, updated_at)
      VALUES ('t', 'b', 'session_too_long', 'details', repeat('k', 100), '2020-01-01'), ('t', 'b', NULL, NULL, 'k', now());`);
    const again = await dedupe(['--schema', schema, '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json().archive_ddl.length, 3, 'two columns added, one widened');
    const row = await one(`SELECT auth_error, error_details, length(key_id) AS key_len FROM ${s}.telegram_sessions_duplicates_archive WHERE user_id = 'b'`);
    assert.deepEqual(row, { auth_error: 'session_too_long', error_details: 'details', key_len: 100 });
  });
});

describe('tsm dedupe: ids of other types', () => {
  it('text ids with spaces, quotes, commas, colons and unicode; bigint ids: moved whole, kept_id right', async () => {
    await db.sql(`CREATE SCHEMA textid;
      CREATE TABLE textid.telegram_sessions (id text PRIMARY KEY, tenant_id text NOT NULL, user_id text, updated_at timestamptz NOT NULL);
      INSERT INTO textid.telegram_sessions VALUES
        ('a b', 't', 'u1', '2024-01-01'), ('c,"d"', 't', 'u1', '2024-01-03'), ('e:f\\g', 't', 'u1', '2024-01-02'),
        ('ünï {x}', 't', 'u2', '2024-01-01'), (''' ;', 't', 'u2', '2024-01-05'), ('solo', 't', 'u3', '2024-01-01');
      CREATE SCHEMA bigid;
      CREATE TABLE bigid.telegram_sessions (id bigint PRIMARY KEY, tenant_id text NOT NULL, user_id text, updated_at timestamptz NOT NULL);
      INSERT INTO bigid.telegram_sessions SELECT g, 't', 'u' || (g % 3), timestamptz '2024-01-01' + g * interval '1 hour' FROM generate_series(1, 9) g;`);
    const t = await dedupe(['--schema', 'textid', '--json']);
    assert.equal(t.code, 0, t.stderr);
    assert.equal(t.json<DedupeReport>().verification?.ok, true);
    const kept = (await db.sql(`SELECT user_id, id FROM textid.telegram_sessions ORDER BY user_id`)).rows;
    assert.deepEqual(kept, [{ user_id: 'u1', id: 'c,"d"' }, { user_id: 'u2', id: "' ;" }, { user_id: 'u3', id: 'solo' }]);
    const archived = (await db.sql(`SELECT id, kept_id FROM textid.telegram_sessions_duplicates_archive ORDER BY id`)).rows;
    assert.deepEqual(archived, [{ id: 'a b', kept_id: 'c,"d"' }, { id: 'e:f\\g', kept_id: 'c,"d"' }, { id: 'ünï {x}', kept_id: "' ;" }]);
    const b = await dedupe(['--schema', 'bigid', '--json']);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.json<DedupeReport>().archived, 6);
    assert.deepEqual((await db.sql(`SELECT id::int FROM bigid.telegram_sessions ORDER BY 1`)).rows.map((r) => r.id), [7, 8, 9]);
  });
});

describe('tsm dedupe: errors', () => {
  it('usage errors exit 2 with one line', async () => {
    for (const args of [['--batch-size', '0'], ['--batch-size', 'x'], ['--keep', 'middle']]) {
      const r = await dedupe(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stdout, '');
      assert.ok(r.stderr.trim().split('\n').length <= 2, r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  it('cannot connect: exit 3', async () => {
    const port = await freePort();
    const r = await runTsm(['dedupe', '-d', `postgres://u:secret@127.0.0.1:${port}/x`]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^tsm: cannot connect to postgres:\/\/u:\*\*\*@127\.0\.0\.1/);
    assert.doesNotMatch(r.stderr, /secret/);
  });

  it('no table in the schema: exit 1 with one line', async () => {
    const r = await dedupe(['--schema', 'nowhere']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'tsm: no table nowhere.telegram_sessions: nothing to dedupe (wrong --schema? `tsm doctor` shows what is there)\n');
  });

  it('an archive that does not take every row (a trigger dropping some): the batch is rolled back, nothing lost, exit 1', async () => {
    await db.sql(`${preFixSchema('trig')}
      INSERT INTO trig.telegram_sessions (tenant_id, user_id) SELECT 't', 'u-' || (g % 5) FROM generate_series(1, 20) g;
      CREATE TABLE orig_trig AS SELECT * FROM trig.telegram_sessions;`);
    const first = await dedupe(['--schema', 'trig', '--dry-run']); // nothing created
    assert.equal(first.code, 1);
    // The archive exists (from a run on a table without duplicates), then someone adds a trigger that swallows rows.
    await db.sql(`CREATE TABLE trig.telegram_sessions_duplicates_archive (LIKE trig.telegram_sessions, archived_at timestamptz NOT NULL DEFAULT now(), kept_id uuid);
      CREATE FUNCTION trig.swallow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.user_id = 'u-3' THEN RETURN NULL; END IF; RETURN NEW; END $$;
      CREATE TRIGGER swallow BEFORE INSERT ON trig.telegram_sessions_duplicates_archive FOR EACH ROW EXECUTE FUNCTION trig.swallow();`);
    const r = await dedupe(['--schema', 'trig', '--batch-size', '50']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tsm: dedupe stopped: telegram_sessions_duplicates_archive took 12 of the 15 rows a batch deleted \(a trigger or a rule on it\?\); that batch was rolled back, so no row was lost; fix the archive table, then run tsm dedupe --schema trig again\n$/);
    const left = await one(`SELECT (SELECT count(*) FROM trig.telegram_sessions)::int AS t, (SELECT count(*) FROM trig.telegram_sessions_duplicates_archive)::int AS a,
        (SELECT count(*) FROM orig_trig o WHERE NOT EXISTS (SELECT 1 FROM trig.telegram_sessions t WHERE t.id = o.id))::int AS missing`);
    assert.deepEqual(left, { t: 20, a: 0, missing: 0 });
  });

  it('the row-by-row check is real: a trigger that puts deleted rows back makes it fail, exit 1', async () => {
    await db.sql(`${preFixSchema('back')}
      INSERT INTO back.telegram_sessions (tenant_id, user_id, updated_at) SELECT 't', 'u-' || (g % 4), now() - g * interval '1 s' FROM generate_series(1, 12) g;
      CREATE FUNCTION back.put_back() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        IF OLD.user_id = 'u-1' THEN INSERT INTO back.telegram_sessions SELECT OLD.*; END IF; RETURN OLD; END $$;
      CREATE TRIGGER put_back AFTER DELETE ON back.telegram_sessions FOR EACH ROW EXECUTE FUNCTION back.put_back();`);
    const r = await dedupe(['--schema', 'back', '--json', '--batch-size', '100']);
    assert.equal(r.code, 1, r.stderr);
    const j = r.json<DedupeReport>();
    assert.equal(j.verification?.ok, false);
    assert.ok((j.verification?.in_table ?? 0) >= 2, JSON.stringify(j.verification));
    const human = await dedupe(['--schema', 'back', '--batch-size', '100']);
    assert.match(human.stdout, /fail +moved rows: \d+ moved, \d+ found in the archive \(\d+ distinct\), [1-9]\d* still in the table/);
  });

  it('a role that may not create the archive: exit 1, one classified line, nothing moved', async () => {
    await db.sql(`${preFixSchema('locked')} INSERT INTO locked.telegram_sessions (tenant_id, user_id) VALUES ('t', 'a'), ('t', 'a');`);
    const role = await db.role('tsm_dedupe_ro');
    await db.sql(`GRANT USAGE ON SCHEMA locked TO "${role.name}"; GRANT SELECT, DELETE ON locked.telegram_sessions TO "${role.name}"`);
    const r = await runTsm(['dedupe', '-d', role.url, '--schema', 'locked']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tsm: dedupe stopped: permission_denied \(42501\): permission denied for schema locked; .*run tsm dedupe --schema locked again\n$/);
    assert.equal((await one(`SELECT count(*)::int AS n FROM locked.telegram_sessions`)).n, 2);
  });
});
