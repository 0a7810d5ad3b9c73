/**
 * Hostile names (issue 8, finding 1): indexes, constraints, columns and schemas whose names hold
 * newlines, quotes, `--`, `*` `/`, `;`, `$$` and unicode reach tsm from the catalog and from
 * --schema. No such name may ever become SQL. Each command runs through the real CLI; after each,
 * the catalog is compared with the one before (exactly the expected objects appear or go, and
 * nothing named pwned* exists anywhere), and the command must have done its job.
 *
 * The first test is the reproduction: an index named `x` + newline +
 * `CREATE TABLE public.pwned();--` made `tsm migrate up`, run as postgres, create that table
 * (the old noteOf path sent the second line of a "note" to the server).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { doctor } from './helpers/doctor.js';
import { preFixSchema, q } from './helpers/fixtures.js';
import { SHIPPED, catalogSnapshot, history, lastLine, migrate, objectDiff, pwned, upAdds, userObjects } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);

/** The exact index name. */
const REPRO_INDEX = 'x\nCREATE TABLE public.pwned();--';
/** A schema name with every troublesome character --schema accepts (no control characters). */
const SCHEMA = `it's "tg" -- */ ; $$ $fn$ /* ü🚀`;
const COLUMN = 'session\nCREATE TABLE public.pwned_col();--';
const CONSTRAINT = "c\n'; CREATE TABLE public.pwned_con(); --";
const INDEX = 'ix */ $fn$ $$ ;\nCREATE TABLE public.pwned_ix();--';

/** No line of a log or message starts a statement that came from a name. */
function noInjectedLine(text: string): void {
  const bad = text.split('\n').filter((l) => /^\s*CREATE TABLE public\.pwned/i.test(l));
  assert.deepEqual(bad, [], 'a catalog name started a line of its own');
}

/**
 * SQL as psql would see it, with comments, string literals, quoted identifiers and dollar-quoted
 * bodies cut out: what is left is what would run. A name from the catalog may appear only inside
 * those, never in what is left.
 */
function executableParts(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const two = sql.slice(i, i + 2);
    if (two === '--') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end;
    } else if (two === '/*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (sql[i] === "'" || sql[i] === '"') {
      const quote = sql[i]!;
      let j = i + 1;
      while (j < sql.length && !(sql[j] === quote && sql[j + 1] !== quote)) j += sql[j] === quote ? 2 : 1;
      out += quote === '"' ? 'IDENT' : 'LITERAL';
      i = j + 1;
    } else {
      const tag = sql[i] === '$' ? /^\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$/.exec(sql.slice(i))?.[0] : undefined;
      if (tag !== undefined) {
        const end = sql.indexOf(tag, i + tag.length);
        out += 'BODY';
        i = end < 0 ? sql.length : end + tag.length;
      } else {
        out += sql[i];
        i++;
      }
    }
  }
  return out;
}

function noInjectedSql(sql: string): void {
  assert.doesNotMatch(executableParts(sql), /pwned/i, 'a name from the catalog reached SQL outside quotes');
}

/** What a POSIX shell makes of the `--schema …` argument in a suggested command. */
function shellWord(command: string): string {
  const m = /--schema (.+?)(?:`|$| {3})/.exec(command);
  assert.ok(m, `no --schema in ${command}`);
  return execFileSync('/bin/sh', ['-c', `printf %s ${m[1]}`], { encoding: 'utf8' });
}

describe('hostile names never become SQL', () => {
  it("the issue's reproduction: an equivalent unique index named x\\nCREATE TABLE public.pwned();-- — dry-run, up, doctor, down create no pwned table", async () => {
    await db.sql(preFixSchema('public'));
    await db.sql(`CREATE UNIQUE INDEX ${q(REPRO_INDEX)} ON public.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
    const snap = await catalogSnapshot(db);
    const before = await userObjects(db);

    const dry = await migrate(db.url, ['up', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    noInjectedSql(dry.stdout);
    assert.match(dry.stdout, /^-- x\\nCREATE TABLE public\.pwned\(\);-- is a valid unique index on \(user_id\) WHERE \(user_id IS NOT NULL\): nothing to build$/m);
    const dryJson = (await migrate(db.url, ['up', '--dry-run', '--json'])).json();
    const planned = dryJson.migrations.find((m: { name: string }) => m.name === '0004_user_id_unique_index');
    assert.deepEqual(planned.notes, [`${REPRO_INDEX} is a valid unique index on (user_id) WHERE (user_id IS NOT NULL): nothing to build`]);
    assert.deepEqual(await catalogSnapshot(db), snap, 'dry-run changed nothing');
    assert.deepEqual(await pwned(db), []);

    const up = await migrate(db.url, ['up', '--json']);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(await pwned(db), [], 'no pwned table after migrate up');
    noInjectedLine(up.stderr);
    const step = up.json().steps.find((s: { name: string }) => s.name === '0004_user_id_unique_index');
    assert.deepEqual(step.notes, [`${REPRO_INDEX} is a valid unique index on (user_id) WHERE (user_id IS NOT NULL): nothing to build`], 'the name is data, intact');
    assert.deepEqual(await history(db), SHIPPED);
    const diff = objectDiff(before, await userObjects(db));
    assert.deepEqual(diff.added.sort(), upAdds('public', { index: false }), 'exactly what up creates, and no second unique index');
    assert.deepEqual(diff.removed, []);

    const human = await migrate(db.url, ['up']);
    assert.equal(human.code, 0);
    const doc = await doctor(db.url);
    const notOk = doc.report.checks.filter((c) => c.status !== 'ok').map((c) => `${c.id}: ${c.detail}`);
    assert.deepEqual(notOk, [], 'the hostile index serves ON CONFLICT; doctor is all ok');
    assert.deepEqual(await pwned(db), []);

    const down = await migrate(db.url, ['down', String(SHIPPED.length), '--json']);
    assert.equal(down.code, 0, down.stderr);
    const notes = down.json().steps.flatMap((s: { notes: string[] }) => s.notes);
    assert.ok(notes.includes(`no index named telegram_sessions_user_id_unique: nothing to drop (${REPRO_INDEX}, not created by this migration, is left in place)`), notes.join(' | '));
    noInjectedLine(down.stderr);
    assert.deepEqual(await history(db), []);
    assert.deepEqual(await pwned(db), []);
  });

  it(`schema ${JSON.stringify(SCHEMA)} with hostile column, constraint and index names: doctor, dry-run, up, dedupe, test-write, status, down`, async () => {
    const s = q(SCHEMA);
    await db.sql(preFixSchema(SCHEMA));
    await db.sql(`ALTER TABLE ${s}.telegram_sessions ADD COLUMN ${q(COLUMN)} varchar(100), ADD CONSTRAINT ${q(CONSTRAINT)} CHECK (status <> '')`);
    await db.sql(`CREATE INDEX ${q(INDEX)} ON ${s}.telegram_sessions (tenant_id)`);
    await db.sql(
      `INSERT INTO ${s}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status, ${q(COLUMN)})
       SELECT 't-1', 'u-' || g, repeat(md5(g::text), 4), 'k1', 'active', 'v' || g FROM generate_series(1, 30) g
       UNION ALL SELECT 't-1', 'u-' || g, repeat(md5('dup' || g), 4), 'k1', 'active', NULL FROM generate_series(1, 3) g`,
    );
    const args = ['--schema', SCHEMA];

    // doctor: it runs, finds the pre-fix problems, and changes nothing.
    let snap = await catalogSnapshot(db);
    const doc = await doctor(db.url, args);
    assert.equal(doc.code, 1);
    assert.equal(doc.report.schema, SCHEMA);
    assert.equal(doc.check('data.duplicates').status, 'fail');
    assert.deepEqual(await catalogSnapshot(db), snap, 'doctor changed nothing');

    // dry-run: would stop at the duplicates; the suggested command survives a shell.
    const dry = await migrate(db.url, ['up', '--dry-run', ...args]);
    assert.equal(dry.code, 0, dry.stderr);
    noInjectedSql(dry.stdout);
    assert.match(executableParts(dry.stdout), /ALTER TABLE IDENT\.telegram_sessions ALTER COLUMN IDENT TYPE text;/, 'the hostile column is widened, quoted');
    const stop = /-- would stop here: (.*)$/m.exec(dry.stdout)?.[1] ?? '';
    assert.match(stop, /3 user_ids have more than one row/);
    const dedupeCommand = /run `(tsm dedupe [^`]*)`/.exec(stop)?.[1] ?? '';
    assert.equal(shellWord(dedupeCommand), SCHEMA, `the suggested command names the schema: ${dedupeCommand}`);
    assert.deepEqual(await catalogSnapshot(db), snap, 'dry-run changed nothing');

    // up refuses (duplicates) with nothing applied.
    const refused = await migrate(db.url, ['up', ...args]);
    assert.equal(refused.code, 1);
    assert.match(lastLine(refused.stderr), /^tsm: 0004_user_id_unique_index: 3 user_ids have more than one row .*; nothing was applied$/);
    assert.deepEqual(await catalogSnapshot(db), snap, 'nothing applied');

    // dedupe: archives the 3 extra rows (the archive table is the only new relation).
    const objectsBefore = await userObjects(db);
    const dd = await runTsm(['dedupe', '--json', '-d', db.url, ...args]);
    assert.equal(dd.code, 0, dd.stderr);
    assert.deepEqual(await pwned(db), []);
    const archived = (await db.sql(`SELECT count(*)::int AS n FROM ${s}.telegram_sessions_duplicates_archive`)).rows[0].n;
    assert.equal(archived, 3);
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM ${s}.telegram_sessions`)).rows[0].n, 30);
    const ddDiff = objectDiff(objectsBefore, await userObjects(db));
    assert.deepEqual(ddDiff.removed, []);
    assert.ok(ddDiff.added.every((o) => o.includes('telegram_sessions_duplicates_archive')), ddDiff.added.join('\n'));
    assert.ok(ddDiff.added.includes(`column ${SCHEMA}.telegram_sessions_duplicates_archive.${COLUMN}`), 'the hostile column is archived too');

    // up: everything applied; the hostile names are notes (data), quoted in SQL.
    const beforeUp = await userObjects(db);
    const up = await migrate(db.url, ['up', '--json', ...args]);
    assert.equal(up.code, 0, up.stderr);
    noInjectedLine(up.stderr);
    assert.deepEqual(await pwned(db), []);
    assert.deepEqual(await history(db, SCHEMA), SHIPPED);
    const notes = up.json().steps.flatMap((x: { notes: string[] }) => x.notes);
    assert.ok(notes.includes(`widening ${COLUMN} (character varying(100)) to text: catalog-only, no table rewrite`), notes.join(' | '));
    const type = (await db.sql(`SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2`, [`${s}.telegram_sessions`, COLUMN])).rows[0].t;
    assert.equal(type, 'text', 'the hostile column was widened');
    const upDiff = objectDiff(beforeUp, await userObjects(db));
    assert.deepEqual(upDiff.added.sort(), upAdds(SCHEMA));
    assert.deepEqual(upDiff.removed, []);

    // doctor: all ok now, in that schema.
    const after = await doctor(db.url, args);
    const notOk = after.report.checks.filter((c) => c.status !== 'ok').map((c) => `${c.id}: ${c.detail}`);
    assert.deepEqual(notOk, []);

    // test-write: writes through the function in that schema, cleans up after itself.
    snap = await catalogSnapshot(db);
    const rows = (await db.sql(`SELECT count(*)::int AS n FROM ${s}.telegram_sessions`)).rows[0].n;
    const tw = await runTsm(['test-write', '--json', '--rounds', '2', '--concurrency', '4', '-d', db.url, ...args]);
    assert.equal(tw.code, 0, tw.stdout + tw.stderr);
    assert.equal(tw.json().ok, true);
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM ${s}.telegram_sessions`)).rows[0].n, rows, 'test rows removed');
    assert.deepEqual(await catalogSnapshot(db), snap, 'test-write left the catalog as it was');
    assert.deepEqual(await pwned(db), []);

    // status: up to date.
    const st = await migrate(db.url, ['status', '--json', ...args]);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(st.json().schema, SCHEMA);

    // down all: 0006 … 0002 reverted, 0001 refuses (the table holds rows), names in the message quoted.
    const down = await migrate(db.url, ['down', String(SHIPPED.length), ...args]);
    assert.equal(down.code, 1);
    assert.equal(
      lastLine(down.stderr),
      `tsm: 0001_create_table (down) failed: refusing to drop ${q(SCHEMA)}.telegram_sessions: it holds 30 rows; dropping it would lose them; ` +
        'reverted before it: 0006_harden_upsert_function, 0005_upsert_function, 0004_user_id_unique_index, 0003_diagnostic_columns, 0002_widen_session_columns',
    );
    assert.deepEqual(await history(db, SCHEMA), ['0001_create_table']);
    assert.deepEqual(await pwned(db), []);
  });

  it('the DO guard of a down migration survives a schema whose name holds its dollar-quote tag', async () => {
    const schema = 'g$guard$;CREATE TABLE public.pwned_guard();--';
    const r = await migrate(db.url, ['up', '--schema', schema]);
    assert.equal(r.code, 0, r.stderr);
    const down = await migrate(db.url, ['down', String(SHIPPED.length), '--schema', schema]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await history(db, schema), []);
    assert.equal((await db.sql(`SELECT to_regclass($1) AS t`, [`${q(schema)}.telegram_sessions`])).rows[0].t, null, 'the empty table was dropped');
    assert.deepEqual(await pwned(db), []);
  });
});
