/**
 * tsm doctor on the fully fixed schema (issue 2, test 8), in a non-public schema (test 10), and its
 * human output: the table, the remedies, the summary line.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { ALL_IDS, allOkExcept, doctor, remedySql } from './helpers/doctor.js';
import { fixedFunction, fixedSchema, preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

describe('tsm doctor: fixed and non-public schemas', () => {
  it('8. the fully fixed schema: every check ok, migrations skipped (no tsm history), exit 0', async () => {
    await db.sql(fixedSchema('public'));
    await db.sql(`INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id)
                  SELECT 't', 'u' || g, repeat('A', 800), 'k1' FROM generate_series(1, 50) g`);
    const r = await doctor(db.url);
    assert.equal(r.code, 0);
    assert.deepEqual(r.statuses, allOkExcept({ migrations: 'skipped' }));
    assert.deepEqual(r.report.summary, { ok: 13, warn: 0, fail: 0, skipped: 1 });
    assert.match(r.check('migrations').detail, /no public\.tsm_migrations table/);
    assert.ok(r.report.checks.every((c) => c.remedy === null));
    assert.ok(r.report.checks.every((c) => c.title.length > 0 && (c.severity === 'fail' || c.severity === 'warn')));
  });

  it('human output: a table of check / status / detail and the summary in ok / warning / failing words', async () => {
    const r = await runTsm(['doctor', '--database-url', db.url]);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    const lines = r.stdout.split('\n');
    assert.ok(lines.some((l) => /│ check\s+│ status\s+│ detail\s+│/.test(l)), r.stdout);
    for (const id of ALL_IDS) assert.ok(lines.some((l) => l.startsWith(`│ ${id} `)), `row for ${id}`);
    assert.equal(lines.filter((l) => l.trim() !== '').at(-1), '13 ok, 0 warning, 0 failing, 1 skipped');
    assert.doesNotMatch(r.stdout, /passed|Remedies/);
    assert.ok(!r.stdout.includes('\u001b['), 'no colour when not on a terminal');
  });

  it('human output of a broken schema: each problem with its remedy, and the counts', async () => {
    await db.sql(preFixSchema('broken'));
    const r = await runTsm(['doctor', '--database-url', db.url, '--schema', 'broken']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /\nRemedies\n/);
    assert.match(r.stdout, /fail {2}index\.user-id-unique: Unique index on user_id\n {6}tsm migrate up --schema broken/);
    assert.match(r.stdout, /fail {2}index\.on-conflict: .*\n {6}the same remedy as index\.user-id-unique/);
    assert.match(r.stdout, /fail {2}function\.upsert: .*\n {6}tsm migrate up --schema broken/);
    assert.match(r.stdout, /\n9 ok, 0 warning, 4 failing, 1 skipped\n$/);
    assert.doesNotMatch(r.stdout, /passed|failed/);
  });

  it('10. a non-public schema with a name that needs quoting: doctor looks there, remedies quote it', async () => {
    const schema = 'Tg Sessions';
    await db.sql(preFixSchema(schema));
    const r = await doctor(db.url, ['--schema', schema]);
    assert.equal(r.code, 1);
    assert.equal(r.report.schema, schema);
    assert.deepEqual(
      r.statuses,
      allOkExcept({
        'columns.diagnostics': 'fail',
        'index.user-id-unique': 'fail',
        'index.on-conflict': 'fail',
        'function.upsert': 'fail',
        migrations: 'skipped',
      }),
    );
    assert.match(r.check('table').detail, /^"Tg Sessions"\.telegram_sessions: 8 columns/);
    assert.match(r.check('function.upsert').remedy ?? '', /tsm migrate up --schema 'Tg Sessions'/);

    // The remedies' SQL is copy-paste ready: run it and the checks turn ok.
    for (const id of ['columns.diagnostics', 'index.user-id-unique']) {
      for (const sql of remedySql(r.check(id).remedy)) await db.sql(sql);
    }
    const after = await doctor(db.url, ['--schema', schema]);
    assert.deepEqual(after.statuses, allOkExcept({ 'function.upsert': 'fail', migrations: 'skipped' }));
    assert.match(after.check('index.on-conflict').detail, /arbiter index: telegram_sessions_user_id_unique/);

    // The fixed function in that schema (not in public, not on the search_path) is found and judged.
    await db.sql(fixedFunction(schema));
    const done = await doctor(db.url, ['--schema', schema]);
    assert.equal(done.code, 0);
    assert.deepEqual(done.statuses, allOkExcept({ migrations: 'skipped' }));
  });
});
